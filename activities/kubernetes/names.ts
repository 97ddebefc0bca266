/**
 * Object names as Kubernetes accepts them. Names end up in API paths and label selectors, so one that Kubernetes
 * would refuse is refused here first, naming where it came from, before it reaches a request.
 */
import { fail } from '../../domain/failures.js';

/** RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, at most 63 characters. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1035 label: an RFC 1123 label that starts with a letter (Service names). */
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_MAX = 63;
const SUBDOMAIN_MAX = 253;

export type NameRule = 'dns-1123-subdomain' | 'dns-1123-label' | 'dns-1035-label';

/** Kinds whose names Kubernetes holds to a label rather than a subdomain; every other kind takes a subdomain. */
const LABEL_NAMED: Record<string, NameRule> = {
  Namespace: 'dns-1123-label',
  Service: 'dns-1035-label',
};

export const nameRuleOf = (kind: string): NameRule => LABEL_NAMED[kind] ?? 'dns-1123-subdomain';

const EXPECTED: Record<NameRule, string> = {
  'dns-1123-subdomain':
    'a DNS-1123 subdomain: lower-case letters, digits, "-" and ".", starting and ending with a letter or digit, ' +
    `at most ${SUBDOMAIN_MAX} characters`,
  'dns-1123-label':
    'a DNS-1123 label: lower-case letters, digits and "-", starting and ending with a letter or digit, ' +
    `at most ${LABEL_MAX} characters`,
  'dns-1035-label':
    'a DNS-1035 label: lower-case letters, digits and "-", starting with a letter and ending with a letter or digit, ' +
    `at most ${LABEL_MAX} characters`,
};

/** Why `value` breaks `rule`, or undefined when it is a valid name. */
export function nameProblem(value: unknown, rule: NameRule): string | undefined {
  if (typeof value !== 'string' || value === '') return `expected ${EXPECTED[rule]}`;
  const ok =
    rule === 'dns-1123-subdomain'
      ? value.length <= SUBDOMAIN_MAX && value.split('.').every((part) => DNS_LABEL.test(part))
      : value.length <= LABEL_MAX && (rule === 'dns-1035-label' ? DNS_1035_LABEL : DNS_LABEL).test(value);
  // Quoted and cut short: a bad name can be long or hold control characters.
  return ok ? undefined : `expected ${EXPECTED[rule]}, got ${JSON.stringify(value.slice(0, 80))}`;
}

/**
 * Checks an object's metadata.name and metadata.namespace; `where` names the file (or revision) and object. Throws
 * the invalid-release failure naming where, the field and what was expected.
 */
export function checkObjectNames(where: string, kind: string, metadata: { name?: unknown; namespace?: unknown }): void {
  const nameIssue = nameProblem(metadata.name, nameRuleOf(kind));
  if (nameIssue) throw fail('invalid', `${where}: ${kind} metadata.name: ${nameIssue}`);
  if (metadata.namespace === undefined) return;
  const namespaceIssue = nameProblem(metadata.namespace, 'dns-1123-label');
  if (namespaceIssue) throw fail('invalid', `${where}: ${kind} metadata.namespace: ${namespaceIssue}`);
}

/** One URL path segment: a name checked above still goes through encoding, so no value can add a segment. */
export const segment = (value: string): string => encodeURIComponent(value);
