/**
 * `deploy-agent login`: the OAuth 2.0 device authorization grant (RFC 8628). The CLI shows a link and a code, the
 * person signs in with a browser anywhere, and the tokens land in the credentials file that `credentialFor` reads.
 */
import { decodeJwt } from 'jose';
import { InvalidInput } from '../domain/failures.js';
import {
  DEFAULT_CLIENT_ID,
  discover,
  loginFields,
  postForm,
  saveLogin,
  tokenRequest,
  TokenRefused,
  type TokenAnswer,
} from './credentials.js';

export interface LoginOptions {
  /** Default DEPLOY_AGENT_OIDC_ISSUER. */
  issuer?: string;
  /** Default DEPLOY_AGENT_OIDC_CLIENT_ID, else deploy-agent-cli. */
  clientId?: string;
  /** Where the link, the code and the outcome are written; default stderr, so stdout stays clean for scripts. */
  output?: { write(text: string): unknown };
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// RFC 8628 3.5: without an interval the client waits 5 s between polls, and 5 s more after each slow_down.
const DEFAULT_INTERVAL_S = 5;
const SLOW_DOWN_S = 5;
const DEFAULT_CODE_LIFETIME_S = 600;

export async function loginCommand(options: LoginOptions = {}): Promise<number> {
  const issuer = options.issuer || process.env.DEPLOY_AGENT_OIDC_ISSUER;
  const clientId = options.clientId || process.env.DEPLOY_AGENT_OIDC_CLIENT_ID || DEFAULT_CLIENT_ID;
  const output = options.output ?? process.stderr;
  if (!issuer)
    throw new InvalidInput('no OpenID provider to sign in with: pass --issuer URL or set DEPLOY_AGENT_OIDC_ISSUER');
  const provider = await discover(issuer);
  if (!provider.device_authorization_endpoint)
    throw new InvalidInput(`the OpenID provider ${issuer} offers no device authorization, which \`login\` needs`);

  let started: Record<string, unknown>;
  try {
    started = await postForm(provider.device_authorization_endpoint, { client_id: clientId, scope: 'openid' });
  } catch (error) {
    if (error instanceof TokenRefused)
      throw new InvalidInput(
        `the OpenID provider refused to start a sign-in for client ${clientId} (${error.message})`,
      );
    throw error;
  }
  const { device_code: deviceCode, user_code: userCode, verification_uri: verificationUri } = started;
  if (typeof deviceCode !== 'string' || typeof userCode !== 'string' || typeof verificationUri !== 'string')
    throw new InvalidInput(`the OpenID provider ${issuer} answered the device authorization without a code`);
  const complete =
    typeof started.verification_uri_complete === 'string' ? started.verification_uri_complete : undefined;
  const lifetimeS = positive(started.expires_in) ?? DEFAULT_CODE_LIFETIME_S;
  let intervalS = positive(started.interval) ?? DEFAULT_INTERVAL_S;

  output.write(
    complete
      ? `To sign in, open ${complete}\n(or open ${verificationUri} and enter the code ${userCode})\n`
      : `To sign in, open ${verificationUri} and enter the code ${userCode}\n`,
  );
  output.write(`Waiting for the sign-in to be confirmed (the code expires in ${formatSeconds(lifetimeS)})...\n`);

  const deadline = Date.now() + lifetimeS * 1000;
  let answer: TokenAnswer | undefined;
  // Bounded by the code's lifetime and, whatever the clock does, by a number of polls.
  for (let poll = 0; poll < Math.ceil(lifetimeS / intervalS) + 1 && !answer; poll++) {
    const waitMs = Math.min(intervalS * 1000, deadline - Date.now());
    if (waitMs <= 0) break;
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    try {
      answer = await tokenRequest(provider.token_endpoint, {
        grant_type: DEVICE_GRANT,
        device_code: deviceCode,
        client_id: clientId,
      });
    } catch (error) {
      if (!(error instanceof TokenRefused)) throw error;
      if (error.error === 'authorization_pending') continue;
      if (error.error === 'slow_down') {
        intervalS += SLOW_DOWN_S;
        continue;
      }
      if (error.error === 'access_denied') throw new InvalidInput('the sign-in was declined in the browser');
      if (error.error === 'expired_token') break;
      throw new InvalidInput(`the OpenID provider refused the sign-in (${error.message})`);
    }
  }
  if (!answer)
    throw new InvalidInput(
      `the sign-in code expired after ${formatSeconds(lifetimeS)} without being confirmed: run \`deploy-agent login\` again`,
    );

  const file = await saveLogin({ issuer, clientId, ...loginFields(answer) });
  output.write(`Signed in to ${issuer} as ${userOf(answer.access_token)}; credentials saved in ${file}\n`);
  return 0;
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

function formatSeconds(seconds: number): string {
  return seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
}

/** Only to greet the person: the worker, not the CLI, decides what the token proves. */
function userOf(token: string): string {
  try {
    const claims = decodeJwt(token);
    const name = claims.preferred_username ?? claims.sub;
    return typeof name === 'string' ? name : '(unnamed)';
  } catch {
    return '(an opaque token)';
  }
}
