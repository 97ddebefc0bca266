/**
 * Secrets by reference. A spec names the secrets its container needs (`container.secrets`: variable -> secret name);
 * the platform policy says, per environment, where the worker finds each value (a file or one of its own environment
 * variables) and which services may use it. Specs, targets, histories and reports carry these references only: the
 * Docker driver reads the values when it creates the container, and nowhere else.
 */
import type { EnvironmentPolicy } from './policy.js';
import type { ServiceEnvironment, SpecProblem } from './spec.js';

/** Where the worker reads one variable's value. */
export type SecretReference = { secret: string; file: string } | { secret: string; env: string };

/** A spec's secrets that the policy does not give this service in this environment, each naming its spec field. */
export function secretProblems({ service, environment, spec, settings }: ServiceEnvironment): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const where = `environments.${environment}.secrets in the platform policy`;
  const defined = settings.secrets ?? {};
  for (const [variable, name] of Object.entries(spec.container.secrets)) {
    const path = ['container', 'secrets', variable];
    const source = Object.hasOwn(defined, name) ? defined[name] : undefined;
    if (spec.target !== 'docker')
      problems.push({
        path,
        message: 'secrets by reference are for the docker target; a Kubernetes release references Secrets itself',
      });
    else if (!source)
      problems.push({ path, message: `secret ${name} is not defined for environment ${environment} (${where})` });
    else if (source.services && !source.services.includes(service))
      problems.push({
        path,
        message: `secret ${name} is not allowed for service ${service} in ${environment} (its services: ${source.services.join(', ') || 'none'})`,
      });
    if (Object.hasOwn(spec.container.env, variable) || Object.hasOwn(settings.docker?.env ?? {}, variable))
      problems.push({
        path,
        message: `${variable} is also a plain setting; a variable is either a setting or a secret`,
      });
  }
  return problems;
}

/** The references of the spec's secrets the policy gives this service here: what the target carries. */
export function secretReferences(
  service: string,
  secrets: Record<string, string>,
  defined: EnvironmentPolicy['secrets'],
): Record<string, SecretReference> {
  const references: Record<string, SecretReference> = {};
  for (const [variable, secret] of Object.entries(secrets)) {
    const source = Object.hasOwn(defined, secret) ? defined[secret] : undefined;
    if (source && (!source.services || source.services.includes(service)))
      references[variable] = 'file' in source ? { secret, file: source.file } : { secret, env: source.env };
  }
  return references;
}
