import type { BenchSuite } from './measure.js';

/** Placeholder until this suite is written. */
export const dockerSuite: BenchSuite = () => Promise.resolve([]);
