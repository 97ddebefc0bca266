import type { BenchSuite } from './measure.js';

/** Placeholder until this suite is written. */
export const kubernetesSuite: BenchSuite = () => Promise.resolve([]);
