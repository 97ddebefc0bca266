#!/usr/bin/env node
/** The CLI's wiring: one verb per file in client/, loaded here; the process exit code is the CLI contract. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../domain/duration.js';
import { CliFailure, EXIT, InvalidInput, messageOf } from '../domain/failures.js';
import { runBeforeCliExit } from './exit-hooks.js';
import type { VoteOptions } from './vote.js';

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

/** A verb whose module is loaded only when it runs: starting the CLI costs only what that verb needs. */
const verb = <M, A extends unknown[]>(
  load: () => Promise<M>,
  command: (module: M) => (...args: A) => Promise<number>,
) => run(async (...args: A) => command(await load())(...args));

const fileOption = new Option('-f, --file <path>', 'deployment spec').default('deploy.yaml');

/** With --wait: stop waiting after this long, exit 6 and print the id; the deployment goes on. */
function timeoutOption(): Option {
  return new Option('--timeout <duration>', 'with --wait: stop waiting after this long (exit 6), e.g. 30m').argParser(
    (text: string) => {
      try {
        return parseDuration(text);
      } catch (error) {
        throw new InvalidArgumentError(messageOf(error));
      }
    },
  );
}

/** Overrides a freeze window: only principals the policy names for break-glass may, and it is audited. */
function breakGlassOption(): Option {
  return new Option('--break-glass <reason>', 'deploy during a freeze window (break-glass principals only; audited)');
}

program
  .command('dev')
  .description('start a local Temporal dev server (with its Web UI) and a worker; Ctrl-C stops both')
  .option('--port <port>', 'Temporal frontend port', '7233')
  .option('--ui-port <port>', 'Temporal Web UI port', '8233')
  .option('--db <file>', 'persist the dev server state in this SQLite file')
  .action(
    run(async (options: { port: string; uiPort: string; db?: string }) =>
      (await development('dev', () => import('../stack/dev.js'))).devCommand(options),
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
    run(async (options: { exit?: boolean; target?: string }) =>
      (await development('demo', () => import('../stack/demo.js'))).demoCommand(options),
    ),
  );

program
  .command('login')
  .description('sign in with the OpenID provider (device flow); later commands send its token')
  .option('--issuer <url>', 'the OpenID issuer (default: DEPLOY_AGENT_OIDC_ISSUER)')
  .option(
    '--client-id <id>',
    'the public client to sign in with (default: DEPLOY_AGENT_OIDC_CLIENT_ID, else deploy-agent-cli)',
  )
  .action(
    verb(
      () => import('./login.js'),
      (m) => m.loginCommand,
    ),
  );

program
  .command('worker')
  .description('run a worker against TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE, judging requests by a platform policy')
  .option('--policy <file>', 'the platform policy (default: DEPLOY_AGENT_POLICY)')
  .action(
    run(async (options: { policy?: string }) => {
      if (options.policy) process.env.DEPLOY_AGENT_POLICY = options.policy;
      return (await import('../worker/main.js')).runWorker();
    }),
  );

program
  .command('codec-server')
  .description("decode payloads for the Temporal Web UI and CLI, for the policy's payloadReaders only")
  .requiredOption('--port <port>', 'port to listen on')
  .option('--host <address>', 'address to listen on', '127.0.0.1')
  .option('--allow-origin <origin...>', "browser origins allowed to call it (the Temporal Web UI's)")
  .option('--policy <file>', 'the platform policy (default: DEPLOY_AGENT_POLICY)')
  .option('--tls-cert <file>', 'serve HTTPS with this certificate (the Web UI sends tokens only over https)')
  .option('--tls-key <file>', 'the key of --tls-cert')
  .action(
    verb(
      () => import('./codec-server.js'),
      (m) => m.codecServerCommand,
    ),
  );

program
  .command('validate')
  .description('check a service spec offline, with the same checks a deploy starts with')
  .addOption(fileOption)
  .action(
    verb(
      () => import('./validate.js'),
      (m) => m.validateCommand,
    ),
  );

program
  .command('deploy')
  .description('deploy a version to an environment')
  .addOption(fileOption)
  .requiredOption('--env <environment>', 'environment')
  .requiredOption('--version <version>', 'version (the image tag)')
  .option('--reason <text>', 'why, recorded in the history and the report')
  .addOption(breakGlassOption())
  .option('--wait', 'follow the deployment to its end and exit with its outcome')
  .addOption(timeoutOption())
  .option('--json', 'machine-readable output')
  .action(
    verb(
      () => import('./deploy.js'),
      (m) => m.deployCommand,
    ),
  );

for (const decision of ['approve', 'reject'] as const)
  program
    .command(`${decision} <deployment-id>`)
    .description(`${decision} a deployment waiting at its approval gate`)
    .option('--comment <text>', 'recorded with the vote')
    .option('--content-hash <sha256>', 'the content hash of the plan reviewed (default: the plan shown before voting)')
    .action(
      verb(
        () => import('./vote.js'),
        (m) => (id: string, options: VoteOptions) => m.voteCommand(id, decision, options),
      ),
    );

program
  .command('rollback')
  .description('roll a service back to the previous release, or to the one a deployment applied')
  .addOption(fileOption)
  .option('--service <service>', 'service (must match the spec)')
  .requiredOption('--env <environment>', 'environment')
  .option('--to <deployment-id>', 'the deployment whose release to bring back')
  .option('--reason <text>', 'why, recorded in the history and the report')
  .addOption(breakGlassOption())
  .option('--wait', 'follow the rollback to its end and exit with its outcome')
  .addOption(timeoutOption())
  .option('--json', 'machine-readable output')
  .action(
    verb(
      () => import('./rollback.js'),
      (m) => m.rollbackCommand,
    ),
  );

program
  .command('resolve <deployment-id>')
  .description('answer a failed compensation: retry it, or abandon it after fixing the environment by hand')
  .addOption(new Option('--action <action>').choices(['retry', 'abandon']).makeOptionMandatory())
  .option('--reason <text>', 'recorded with the decision')
  .action(
    verb(
      () => import('./resolve.js'),
      (m) => m.resolveCommand,
    ),
  );

program
  .command('status <deployment-id>')
  .description('phase, timings against budgets, approvals and errors of a deployment')
  .option('--json', 'machine-readable output')
  .action(
    verb(
      () => import('./status.js'),
      (m) => m.statusCommand,
    ),
  );

program
  .command('audit')
  .description('every decision on deployments: requests, votes, overrides and resolves, with who and why')
  .option('--since <date>', 'only deployments started at or after this date (ISO 8601)')
  .option('--service <service>')
  .option('--env <environment>')
  .option('--json', 'machine-readable output')
  .action(
    verb(
      () => import('./audit.js'),
      (m) => m.auditCommand,
    ),
  );

program
  .command('list')
  .description('deployments and rollbacks, newest first')
  .option('--service <service>')
  .option('--env <environment>')
  .option('--json', 'machine-readable output')
  .action(
    verb(
      () => import('./list.js'),
      (m) => m.listCommand,
    ),
  );

/**
 * dev and demo start local infrastructure from stack/, which belongs to the development tree: an installed package
 * ships neither stack/ nor the dev dependencies, so they are loaded only when those verbs run.
 */
async function development<M>(verb: string, load: () => Promise<M>): Promise<M> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new InvalidInput(
      `the ${verb} command needs the development tree (stack/ and the dev dependencies), which this installation ` +
        `does not include: run it from a checkout of deploy-agent after npm install and npm run build ` +
        `(${messageOf(error)})`,
    );
  }
}

async function main(): Promise<number> {
  try {
    await program.parseAsync(process.argv);
    return exitCode;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      const helpShown = code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help';
      return helpShown ? 0 : EXIT.invalid;
    }
    process.stderr.write(`deploy-agent: ${messageOf(error)}\n`);
    return error instanceof CliFailure ? error.exitCode : 1;
  } finally {
    await runBeforeCliExit();
  }
}

process.exitCode = await main();
