/**
 * Replication slots of the local instance: creates the physical slots the keeper wants and drops
 * the `stolon_*` ones it no longer wants, leaving every other slot alone. The manager as a whole:
 * pg-manager.ts.
 */
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { SyncSlotsOptions } from './manager.js';
import type { PgContext } from './pg-context.js';
import { endQuietly } from './pg-socket.js';

/**
 * The slots of `unwanted` that may be dropped now: all of them, or what `opts.mayDrop` answers
 * (only names from `unwanted`); none when it rejects (logged at warn).
 */
async function droppable(ctx: PgContext, unwanted: readonly string[], opts: SyncSlotsOptions): Promise<readonly string[]> {
  if (unwanted.length === 0 || opts.mayDrop === undefined) {
    return unwanted;
  }
  try {
    const allowed = new Set(await opts.mayDrop(unwanted));
    return unwanted.filter((n) => allowed.has(n));
  } catch (err) {
    ctx.log.warn({ slots: unwanted, err: errorMessage(err) }, `not dropping replication slots ${unwanted.join(', ')} now: cannot confirm they are unwanted (${errorMessage(err)}); will retry`);
    return [];
  }
}

/** SQLSTATE duplicate_object: "replication slot … already exists". */
const DUPLICATE_OBJECT = '42710';

/**
 * Creates the physical slots in `wanted` that are missing (`pg_create_physical_replication_slot`)
 * and drops non-temporary physical `stolon_*` slots not in `wanted`; other slots are never
 * touched. A slot that appears between the list and its creation (a new standby creates its
 * own slot before its copy when it may start before this keeper did) counts as created. With
 * `opts.mayDrop`, only the unwanted slots it returns are dropped (asked after the list, so its
 * answer is at least as recent as the slots it sees); when it rejects, none are, and the next call
 * asks again. A drop failure (e.g. the slot is still active) is logged at warn and retried by the
 * next call.
 * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made;
 *   `PG_COMMAND_FAILED` (transient) when a creation failed (after trying every slot).
 * @see https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION
 */
export async function syncSlots(ctx: PgContext, wanted: readonly string[], opts: SyncSlotsOptions = {}): Promise<void> {
  const client = await ctx.socket.connectOrThrow();
  try {
    const res = await client.query<{ slot_name: string }>(
      "select slot_name from pg_replication_slots where slot_type = 'physical' and not temporary",
    );
    const existing = new Set(res.rows.map((r) => r.slot_name));
    const want = new Set(wanted);
    const failures: string[] = [];
    for (const name of want) {
      if (existing.has(name)) {
        continue;
      }
      try {
        await client.query('select pg_create_physical_replication_slot($1)', [name]);
        ctx.log.info({ slot: name }, `created replication slot ${name}`);
      } catch (err) {
        if ((err as { code?: unknown }).code === DUPLICATE_OBJECT) {
          // Created since the list above, by the new standby before its copy.
          ctx.log.info({ slot: name }, `replication slot ${name} exists already (created by its standby before its copy)`);
          continue;
        }
        failures.push(`${name}: ${errorMessage(err)}`);
      }
    }
    const unwanted = [...existing].filter((name) => name.startsWith('stolon_') && !want.has(name));
    for (const name of await droppable(ctx, unwanted, opts)) {
      try {
        await client.query('select pg_drop_replication_slot($1)', [name]);
        ctx.log.info({ slot: name }, `dropped replication slot ${name}`);
      } catch (err) {
        ctx.log.warn({ slot: name, err: errorMessage(err) }, `could not drop replication slot ${name}; will retry`);
      }
    }
    if (failures.length > 0) {
      throw new StolonError('PG_COMMAND_FAILED', `creating replication slots failed: ${failures.join('; ')}`, {
        transient: true,
      });
    }
  } catch (err) {
    if (err instanceof StolonError) {
      throw err;
    }
    throw new StolonError('PG_COMMAND_FAILED', `syncing replication slots failed: ${errorMessage(err)}`, {
      cause: err,
      transient: true,
    });
  } finally {
    await endQuietly(client);
  }
}
