export { deployWorkflow } from './deploy.js';
export { rollbackWorkflow } from './rollback.js';
