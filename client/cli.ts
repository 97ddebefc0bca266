#!/usr/bin/env node
import { Command, Option } from 'commander';
import { EXIT_CODES } from '../domain/failures.js';
const EXIT_INVALID_INPUT = EXIT_CODES.invalid;
const EXIT_UNREACHABLE = EXIT_CODES.unreachable;
import { SpecError } from '../domain/spec.js';
import {
  deployCommand,
  listCommand,
  resolveCompensationCommand,
  rollbackCommand,
  statusCommand,
  validateCommand,
  voteCommand,
} from './commands.js';
import { settings } from './settings.js';

const program = new Command('deploy-agent')
  .description('Deploys and rollbacks as durable Temporal workflows')
  .showHelpAfterError()
  .exitOverride();

let exitCode = 0;
const run =
  <A extends unknown[]>(command: (...args: A) => Promise<number>) =>
  async (...args: A) => {
    exitCode = await command(...args);
  };

const fileOption = new Option('-f, --file <path>', 'deployment spec').default('deploy.yaml');

program
  .command('dev')
  .description('start a local Temporal dev server (with its Web UI) and a worker; Ctrl-C stops both')
  .option('--port <port>', 'Temporal frontend port', '7233')
  .option('--ui-port <port>', 'Temporal Web UI port', '8233')
  .option('--db <file>', 'persist the dev server state in this SQLite file')
  .action(
    run(async (options: { port: string; uiPort: string; db?: string }) =>
      (await import('./dev.js')).devCommand(options),
    ),
  );

program
  .command('demo')
  .description('the bundled example: deploy, approval, a failing version and its automatic rollback, on a local stack')
  .option('--exit', 'exit when the flow ends instead of keeping the stack up (also DEPLOY_AGENT_DEMO_EXIT=1)')
  .addOption(
    new Option('--target <target>', 'where the demo deploys').choices(['docker', 'kubernetes']).default('docker'),
  )
  .action(
    run(async (options: { exit?: boolean; target?: string }) => (await import('./demo.js')).demoCommand(options)),
  );

program
  .command('worker')
  .description('run a worker against TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE')
  .action(run(async () => (await import('./dev.js')).workerCommand()));

program
  .command('validate')
  .description('check a deployment spec offline, with the same checks a deploy starts with')
  .addOption(fileOption)
  .requiredOption('--env <environment>', 'environment')
  .action(run(validateCommand));

program
  .command('deploy')
  .description('deploy a version to an environment')
  .addOption(fileOption)
  .requiredOption('--env <environment>', 'environment')
  .requiredOption('--version <version>', 'version (the image tag)')
  .option('--reason <text>', 'why, recorded in the history and the report')
  .option('--wait', 'follow the deployment to its end and exit with its outcome')
  .option('--json', 'machine-readable output')
  .action(run(deployCommand));

for (const decision of ['approve', 'reject'] as const)
  program
    .command(`${decision} <deployment-id>`)
    .description(`${decision} a deployment waiting at its approval gate`)
    .option('--comment <text>', 'recorded with the vote')
    .action(run((id: string, options: { comment?: string }) => voteCommand(id, decision, options.comment)));

program
  .command('rollback')
  .description('roll a service back to the previous release, or to the one a deployment applied')
  .addOption(fileOption)
  .option('--service <service>', 'service (must match the spec)')
  .requiredOption('--env <environment>', 'environment')
  .option('--to <deployment-id>', 'the deployment whose release to bring back')
  .option('--reason <text>', 'why, recorded in the history and the report')
  .option('--wait', 'follow the rollback to its end and exit with its outcome')
  .option('--json', 'machine-readable output')
  .action(run(rollbackCommand));

program
  .command('resolve <deployment-id>')
  .description('answer a failed compensation: retry it, or abandon it after fixing the environment by hand')
  .addOption(new Option('--action <action>').choices(['retry', 'abandon']).makeOptionMandatory())
  .option('--reason <text>', 'recorded with the decision')
  .action(
    run((id: string, options: { action: 'retry' | 'abandon'; reason?: string }) =>
      resolveCompensationCommand(id, options),
    ),
  );

program
  .command('status <deployment-id>')
  .description('phase, timings against budgets, approvals and errors of a deployment')
  .option('--json', 'machine-readable output')
  .action(run(statusCommand));

program
  .command('list')
  .description('deployments and rollbacks, newest first')
  .option('--service <service>')
  .option('--env <environment>')
  .option('--json', 'machine-readable output')
  .action(run(listCommand));

function isUnreachable(error: unknown): boolean {
  const text = error instanceof Error ? `${error.name} ${error.message}` : String(error);
  return /TransportError|UNAVAILABLE|ECONNREFUSED|connect|DEADLINE_EXCEEDED/i.test(text) && !/SpecError/.test(text);
}

async function main(): Promise<number> {
  try {
    await program.parseAsync(process.argv);
    return exitCode;
  } catch (error) {
    const code = (error as { code?: string; exitCode?: number }).code;
    if (code?.startsWith('commander.')) {
      const helpShown = code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help';
      return helpShown ? 0 : EXIT_INVALID_INPUT;
    }
    if (error instanceof SpecError) {
      process.stderr.write(`deploy-agent: ${error.message}\n`);
      return EXIT_INVALID_INPUT;
    }
    if (error instanceof Error && /is not a deployment id/.test(error.message)) {
      process.stderr.write(`deploy-agent: ${error.message}\n`);
      return EXIT_INVALID_INPUT;
    }
    if (isUnreachable(error)) {
      process.stderr.write(
        `deploy-agent: Temporal at ${settings.address()} is unreachable: ${(error as Error).message}\n`,
      );
      return EXIT_UNREACHABLE;
    }
    process.stderr.write(`deploy-agent: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

process.exitCode = await main();
