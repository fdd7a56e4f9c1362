/** @stolon-ts/keeper: the keeper daemon and its pure planner. */
export { describeDiscard, start, type KeeperConfig, type KeeperDeps, type KeeperHandle, type KeeperState } from './keeper.js';
export { assignedDb, planKeeperAction, type ExternalFollow, type FollowTarget, type KeeperAction, type LocalDbState, type LocalObservation } from './plan.js';
export { KEEPER_FLAGS, type KeeperFlags } from './flags.js';
