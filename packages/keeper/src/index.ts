/** @stolon-ts/keeper: the keeper daemon and its pure planner. */
export { start } from './keeper.js';
export type { KeeperConfig, KeeperDeps, KeeperHandle, KeeperState } from './types.js';
export { describeDiscard } from './pgconfig.js';
export { assignedDb, planKeeperAction, type ExternalFollow, type FollowTarget, type KeeperAction, type LocalDbState, type LocalObservation } from './plan.js';
export { KEEPER_FLAGS, type KeeperFlags } from './flags.js';
export { EXAMPLE_SECRET_PREFIX, refuseExampleSecret } from './passwords.js';
export { ROLE_LABEL, type PodRole } from './role-label.js';
