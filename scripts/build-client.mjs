#!/usr/bin/env node
// `npm run build:client`: bundles the client commands of the CLI (`rotor token …`, `rotor watch`,
// `rotor agent`; entry src/cli/client-main.ts) into one file that runs with a plain `node` 20 and
// no node_modules: dist/rotor-client.mjs. Copy that file to an application host and run
// `node rotor-client.mjs agent …` (README.md, "Installing the client on an application host").
//
// It fails, and leaves no file, when the bundle would need anything beside it at run time:
//  - a server dependency (the database drivers, knex, grpc-js) reached from the entry: these are
//    kept out of the bundle and reported with the file that imports them, so a client module that
//    starts importing the store is caught here rather than on a host without node_modules;
//  - any other import left outside the bundle that is not a Node built-in;
//  - a `require()` of something outside the bundle, which in an ES module bundle only throws
//    "Dynamic require of … is not supported" when it runs.
//
// Flags (for test/e2e/client-bundle.test.ts): --outfile PATH, --entry PATH (to check the guard).
//
// `npm run build:client:sea` (--sea PATH) makes a Node single executable instead: the same bundle
// as CommonJS (what Node 20's SEA runs) injected into a copy of the `node` running this script,
// so it runs on hosts without any Node, but only on this platform and is as large as `node`
// (about 100 MB). Linux only here: macOS and Windows also need the copy's signature removed.
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import { chmod, copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Packages only the server uses: native drivers and the gRPC server. Never in the client. */
const SERVER_ONLY = ['knex', 'pg', 'pg-native', 'sqlite3', 'better-sqlite3', 'mysql', 'mysql2', 'tedious', 'oracledb'];
const SERVER_ONLY_SCOPED = ['@grpc/grpc-js'];

const { values } = parseArgs({
  options: {
    outfile: { type: 'string', default: resolve(ROOT, 'dist/rotor-client.mjs') },
    entry: { type: 'string', default: resolve(ROOT, 'src/cli/client-main.ts') },
    sea: { type: 'string' },
  },
});
if (values.sea !== undefined && process.platform !== 'linux') {
  process.stderr.write(
    'build:client: --sea is supported on Linux only (elsewhere the copy of node must be re-signed)\n',
  );
  process.exit(2);
}
const seaDir = values.sea === undefined ? undefined : await mkdtemp(join(tmpdir(), 'rotor-client-sea-'));
const outfile = seaDir ? join(seaDir, 'rotor-client.cjs') : resolve(values.outfile);

/** `pg/lib/x` → `pg`, `@grpc/grpc-js/build/x` → `@grpc/grpc-js`. */
function packageName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const isBuiltin = (spec) => spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]);

const serverOnly = [...SERVER_ONLY, ...SERVER_ONLY_SCOPED];
let result;
try {
  result = await build({
    absWorkingDir: ROOT,
    entryPoints: [values.entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: seaDir ? 'cjs' : 'esm',
    // Kept out so they can be reported by importer below (bundling knex alone fails on its optional drivers).
    external: serverOnly.flatMap((p) => [p, `${p}/*`]),
    banner: { js: '#!/usr/bin/env node' },
    metafile: true,
    logLevel: 'warning',
  });
} catch {
  // esbuild has printed its errors.
  process.exit(1);
}

const problems = [];
for (const [file, input] of Object.entries(result.metafile.inputs)) {
  for (const imp of input.imports) {
    if (!imp.external) continue;
    const spec = imp.original ?? imp.path;
    if (serverOnly.includes(packageName(spec)))
      problems.push(`${file} imports ${spec}, a server-only package: the client must not reach the store`);
    else if (!isBuiltin(spec)) problems.push(`${file} imports ${spec}, which is not bundled and not a Node built-in`);
    else if (imp.kind === 'require-call')
      problems.push(
        `${file} calls require('${spec}'), which throws "Dynamic require … is not supported" in the bundle`,
      );
  }
}

if (problems.length > 0) {
  await rm(seaDir ?? outfile, { recursive: true, force: true });
  process.stderr.write(
    `build:client: the client bundle would not be self-contained:\n${problems.map((p) => `  - ${p}\n`).join('')}`,
  );
  process.exit(1);
}

const modules = Object.keys(result.metafile.inputs).length;
if (seaDir) {
  const executable = resolve(values.sea);
  try {
    await makeSingleExecutable(outfile, executable);
  } finally {
    await rm(seaDir, { recursive: true, force: true });
  }
  const { size } = await stat(executable);
  process.stdout.write(
    `build:client: ${relative(process.cwd(), executable)} ${(size / 1024 / 1024).toFixed(1)} MiB single executable (node ${process.version}, ${process.platform}-${process.arch}), ${modules} modules\n`,
  );
} else {
  await chmod(outfile, 0o755);
  const { size } = await stat(outfile);
  process.stdout.write(
    `build:client: ${relative(process.cwd(), outfile) || outfile} ${(size / 1024).toFixed(1)} KiB, ${modules} modules, runs with node >= 20 and no node_modules\n`,
  );
}

/** Node's SEA recipe: a preparation blob of the CommonJS bundle, injected into a copy of this node. */
async function makeSingleExecutable(script, executable) {
  const dir = dirname(script);
  const blob = join(dir, 'sea-prep.blob');
  const config = join(dir, 'sea-config.json');
  await writeFile(config, JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true }));
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  await rm(executable, { force: true });
  await copyFile(process.execPath, executable);
  await chmod(executable, 0o755);
  const { inject } = await import('postject');
  await inject(executable, 'NODE_SEA_BLOB', await readFile(blob), {
    sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  });
}
