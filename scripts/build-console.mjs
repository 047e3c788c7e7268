#!/usr/bin/env node
// `npm run build:console`: bundles the web console (console/src/main.tsx, Preact and the Connect
// web client over the generated code of src/gen) into dist/console/, which `rotor serve` serves at
// /console/ (src/http/console-routes.ts). `npm install` runs it (`prepare`), so a fresh clone has
// the files; they are build output and never committed (docs/console.md).
//
// Output: index.html, app.js (one minified ES module), app.css, icon.svg. It fails, and leaves no files,
// when the bundle would break the console's Content-Security-Policy (no eval, no new Function) or
// is larger than the budget of 150 KB gzipped.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = resolve(ROOT, 'dist/console');
const BUDGET = 150 * 1024;

await rm(OUT, { recursive: true, force: true });
await mkdir(OUT, { recursive: true });
try {
  await build({
    absWorkingDir: ROOT,
    entryPoints: ['console/src/main.tsx'],
    outfile: `${OUT}/app.js`,
    tsconfig: 'console/tsconfig.json',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: ['chrome109', 'firefox115', 'safari16'],
    minify: true,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    logLevel: 'warning',
  });
} catch {
  await rm(OUT, { recursive: true, force: true });
  process.exit(1);
}
await copyFile(resolve(ROOT, 'console/index.html'), `${OUT}/index.html`);
await copyFile(resolve(ROOT, 'console/style.css'), `${OUT}/app.css`);
await copyFile(resolve(ROOT, 'console/icon.svg'), `${OUT}/icon.svg`);

const js = await readFile(`${OUT}/app.js`);
const problems = [];
if (/\beval\(|\bnew Function\(/.test(js.toString()))
  problems.push('app.js calls eval or new Function, which the CSP forbids');
let gzipped = 0;
for (const f of ['index.html', 'app.js', 'app.css', 'icon.svg'])
  gzipped += gzipSync(await readFile(`${OUT}/${f}`), { level: 9 }).length;
if (gzipped > BUDGET)
  problems.push(`the console is ${(gzipped / 1024).toFixed(1)} KiB gzipped, over the ${BUDGET / 1024} KiB budget`);
if (problems.length > 0) {
  await rm(OUT, { recursive: true, force: true });
  process.stderr.write(`build:console: ${problems.join('; ')}\n`);
  process.exit(1);
}
process.stdout.write(
  `build:console: ${relative(process.cwd(), OUT) || OUT}/ ${(js.length / 1024).toFixed(1)} KiB of JavaScript, ${(gzipped / 1024).toFixed(1)} KiB gzipped in all\n`,
);
