import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeploymentStatus } from '../domain/deployment.js';
import { renderReport } from '../domain/report.js';
import { recordOutcome } from './metrics.js';

/**
 * Writes the report as JSON (for machines) and Markdown (for people) and counts the outcome once; a retry rewrites
 * the same files harmlessly.
 */
export function reportActivities(reportsDir: string) {
  return {
    async publishReport(status: DeploymentStatus): Promise<string> {
      await mkdir(reportsDir, { recursive: true });
      const base = join(reportsDir, fileNameOf(status.deploymentId));
      const retried = await access(`${base}.json`).then(
        () => true,
        () => false,
      );
      await writeFile(`${base}.json`, `${JSON.stringify(status, null, 2)}\n`);
      if (!retried) recordOutcome(status);
      await writeFile(`${base}.md`, renderReport(status));
      return `${base}.md`;
    },
  };
}

/**
 * The deployment id as a file name inside the reports directory. The id comes from the workflow id, which whoever
 * starts a workflow chooses: separators and leading dots are replaced, so no id can name a path elsewhere.
 */
export function fileNameOf(deploymentId: string): string {
  return deploymentId.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || '_';
}
