/**
 * The security check of a release, at validation: the rules of the worker's policy evaluated over what the release
 * would create, with each rule's action in the environment. It changes nothing; the workflow refuses on deny.
 */
import { fail } from '../../domain/failures.js';
import type { PinnedImage } from '../../domain/release.js';
import type { SecurityFinding, SecuritySettings } from '../../domain/security.js';
import type { Target } from '../../domain/target.js';
import { loadPolicyFile } from '../policy.js';
import { evaluateRules } from './evaluate.js';
import { imageUser } from './image-user.js';
import { dockerSecurityObject } from './docker-input.js';
import { kubernetesSecurityInput } from './kubernetes-input.js';

export interface SecurityCheckRequest {
  target: Target;
  image: PinnedImage;
  version: string;
  settings: SecuritySettings;
}

export function securityActivities(policyFile: string) {
  return {
    async checkSecurity({ target, image, version, settings }: SecurityCheckRequest): Promise<SecurityFinding[]> {
      // The rule files are the worker's, like its policy: read as they are now, checked when the worker started.
      const { rules } = await loadPolicyFile(policyFile).catch((error: unknown) => {
        throw fail('invalid', `the platform policy cannot be used: ${(error as Error).message}`);
      });
      const input =
        target.kind === 'docker'
          ? {
              kind: 'docker' as const,
              container: dockerSecurityObject(target, {
                image,
                version,
                // Only read when it matters: the spec's user decides otherwise.
                imageUser: target.container?.user ? undefined : await imageUser(target, image),
              }),
            }
          : await kubernetesSecurityInput(target, image);
      return evaluateRules(rules, input, settings);
    },
  };
}
