import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeploymentStatus } from '../domain/deployment.js';
import { renderReport } from '../domain/report.js';

/** Writes the report as JSON (for machines) and Markdown (for people); rewriting the same report is harmless. */
export function reportActivities(reportsDir: string) {
  return {
    async publishReport(status: DeploymentStatus): Promise<string> {
      await mkdir(reportsDir, { recursive: true });
      const base = join(reportsDir, status.deploymentId);
      await writeFile(`${base}.json`, `${JSON.stringify(status, null, 2)}\n`);
      await writeFile(`${base}.md`, renderReport(status));
      return `${base}.md`;
    },
  };
}
