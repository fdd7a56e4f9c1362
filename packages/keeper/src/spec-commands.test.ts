/** --allow-spec-commands parsing and which spec settings count as commands. */
import { ConfigError } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { describe, expect, it } from 'vitest';
import { SPEC_COMMANDS, allowedPgParameters, parseAllowSpecCommands, refusedSpecCommands, specCommandsIn } from './spec-commands.js';

describe('parseAllowSpecCommands', () => {
  it('none (the default), empty, all, or a list of names', () => {
    expect([...parseAllowSpecCommands('none')]).toEqual([]);
    expect([...parseAllowSpecCommands('')]).toEqual([]);
    expect([...parseAllowSpecCommands(undefined)]).toEqual([]);
    expect([...parseAllowSpecCommands('all')]).toEqual([...SPEC_COMMANDS]);
    expect([...parseAllowSpecCommands(' Archive_Command, restore_command ')]).toEqual(['archive_command', 'restore_command']);
  });
  it('an unknown name is a ConfigError naming the flag and the known names', () => {
    let err: unknown;
    try {
      parseAllowSpecCommands('archive_command,shared_preload_libraries');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('allow-spec-commands');
    expect((err as Error).message).toBe(
      '--allow-spec-commands: "shared_preload_libraries" is not a command-bearing setting; give none, all, or a comma-separated list of ' +
        'archive_command, archive_cleanup_command, recovery_end_command, ssl_passphrase_command, restore_command, data_restore_command, backup',
    );
    expect(() => parseAllowSpecCommands('all,archive_command')).toThrow(ConfigError);
  });
});

describe('specCommandsIn and refusedSpecCommands', () => {
  it('finds every command-bearing setting of a DB spec, ignoring empty values', () => {
    const cd = aCluster().initialized().withPrimary('k0').build();
    const db = cd.dbs['db-k0']!;
    expect(specCommandsIn(db)).toEqual([]);
    db.spec.pgParameters = { SSL_PASSPHRASE_COMMAND: 'echo x', archive_command: '', work_mem: '1MB', archive_cleanup_command: 'c' };
    db.spec.followConfig = { type: 'external', archiveRecoverySettings: { restoreCommand: 'cp %f %p' } };
    db.spec.pitrConfig = { dataRestoreCommand: 'cp -a /b/. %d' };
    expect(specCommandsIn(db)).toEqual(['archive_cleanup_command', 'ssl_passphrase_command', 'restore_command', 'data_restore_command']);
    expect(refusedSpecCommands(db, new Set(['restore_command', 'archive_cleanup_command']))).toEqual(['ssl_passphrase_command', 'data_restore_command']);
  });
  it('the cluster spec\'s backup section counts as `backup`', () => {
    const cd = aCluster().initialized().withPrimary('k0').build();
    const db = cd.dbs['db-k0']!;
    const backup = { repository: { path: '/backup' } };
    expect(specCommandsIn(db, null)).toEqual([]);
    expect(specCommandsIn(db, backup)).toEqual(['backup']);
    expect(refusedSpecCommands(db, new Set(), backup)).toEqual(['backup']);
    expect(refusedSpecCommands(db, parseAllowSpecCommands('backup'), backup)).toEqual([]);
  });
  it('allowedPgParameters drops only the command parameters not allowed', () => {
    expect(allowedPgParameters({ archive_command: 'a', recovery_end_command: 'b', shared_buffers: '1GB' }, new Set(['recovery_end_command']))).toEqual({
      recovery_end_command: 'b',
      shared_buffers: '1GB',
    });
  });
});
