/** Bundles the workflows at build time (`npm run build`, after tsc) into dist/workflow-bundle.js for the workers. */
import { writeFile } from 'node:fs/promises';
import { bundleWorkflowCode } from '@temporalio/worker';
import { payloadConverterPath } from '../codec/data-converter.js';
import { workflowBundlePath, workflowsPath } from './bundle.js';

const quiet = () => undefined;
const { code } = await bundleWorkflowCode({
  workflowsPath,
  payloadConverterPath,
  logger: {
    log: quiet,
    trace: quiet,
    debug: quiet,
    info: quiet,
    warn: (message) => console.warn(message),
    error: (message) => console.error(message),
  },
});
await writeFile(workflowBundlePath, code);
