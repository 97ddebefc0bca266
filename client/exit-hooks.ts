/**
 * Work the CLI does before it exits, registered by the modules that need it. The CLI loads each verb's modules only
 * when that verb runs, so it cannot name them up front.
 */
const hooks = new Set<() => Promise<void>>();

export function beforeCliExit(hook: () => Promise<void>): void {
  hooks.add(hook);
}

export async function runBeforeCliExit(): Promise<void> {
  await Promise.all([...hooks].map((hook) => hook().catch(() => undefined)));
}
