// Builds the relay addon (native/relay.c → build/Release/relay.node) with node-gyp, the copy npm
// puts on PATH for package scripts. When this Node's own headers are installed next to it
// (<prefix>/include/node: Debian's nodejs, the official tarballs and images), node-gyp is pointed
// at them, so nothing is downloaded; an explicit npm_config_nodedir wins.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';

const prefix = dirname(dirname(process.execPath));
const args = ['rebuild', '--loglevel=warn'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
// node-gyp's make output on stdout is noise; its errors (and the compiler's) go to stderr.
const r = spawnSync('node-gyp', args, { stdio: ['ignore', 'ignore', 'inherit'] });
if (r.error) {
  process.stderr.write(`build:native: cannot run node-gyp (${r.error.message}); run this through npm (npm run build)\n`);
}
process.exit(r.status ?? 1);
