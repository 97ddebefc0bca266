/**
 * Who is asking: a requester, approver or operator proves who they are with an OpenID Connect token the worker
 * verifies. Only a worker whose policy turns on the insecure development mode accepts a bare user name instead.
 */
import { z } from 'zod';
import { durationSchema } from './duration.js';

/** What a request, vote or resolve carries as proof; never logged or reported. */
export const credentialSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('oidc'), token: z.string().min(16).max(16_384) }),
    z.strictObject({ kind: z.literal('insecure-dev'), user: z.string().min(1).max(100) }),
  ],
  { error: 'expected a credential: {kind: "oidc", token} or {kind: "insecure-dev", user}' },
);
export type Credential = z.infer<typeof credentialSchema>;

/** A proven identity: the verified username claim and groups of a token, or a dev-mode name that says so. */
export const identitySchema = z.object({
  user: z.string(),
  groups: z.array(z.string()),
  proof: z.enum(['oidc', 'insecure-dev']),
  issuer: z.string().optional(),
  /** The token's jti: a vote's token counts once. */
  tokenId: z.string().optional(),
  /** When the token was issued (ISO); a vote's token must be fresh. */
  issuedAt: z.string().optional(),
});
export type Identity = z.infer<typeof identitySchema>;

/** How the worker verifies tokens: part of the platform policy. */
export const oidcSettingsSchema = z.strictObject({
  /** The issuer URL; its discovery document names the JWKS. */
  issuer: z.url({ error: 'expected the issuer URL of an OpenID provider' }),
  /** The audience tokens must be issued for. */
  audience: z.string().min(1),
  algorithms: z
    .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1)
    .default(['RS256', 'ES256']),
  /** The claim that names the user; `sub` is always there, `preferred_username` reads better in reports. */
  userClaim: z.string().min(1).default('preferred_username'),
  groupsClaim: z.string().min(1).default('groups'),
  /** A vote or resolve needs a token issued no longer ago than this. */
  maxVoteTokenAge: durationSchema.default(300_000),
});
export type OidcSettings = z.infer<typeof oidcSettingsSchema>;

export const identitySettingsSchema = z
  .strictObject({
    oidc: oidcSettingsSchema.optional(),
    /** Accept bare user names (DEPLOY_AGENT_USER): for a laptop's dev server only, and every report says so. */
    insecureDevMode: z.boolean().default(false),
  })
  .refine((settings) => settings.oidc || settings.insecureDevMode, {
    error: 'expected identity.oidc (or insecureDevMode: true for local development only)',
  });
export type IdentitySettings = z.infer<typeof identitySettingsSchema>;

/**
 * Who a policy names: a user (`alice`) or every member of a group (`group:release-managers`). Groups are compared
 * without a leading slash, as providers write them either way.
 */
export function isNamed(identity: Identity, principals: readonly string[]): boolean {
  const groups = new Set(identity.groups.map((g) => g.replace(/^\//, '')));
  return principals.some((p) =>
    p.startsWith('group:') ? groups.has(p.slice(6).replace(/^\//, '')) : p === identity.user,
  );
}

/** An identity as reports show it: the name, and the proof when it is not a verified token. */
export function describeIdentity(identity: Identity): string {
  return identity.proof === 'oidc' ? identity.user : `${identity.user} (unverified, insecure dev mode)`;
}
