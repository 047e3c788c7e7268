import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * The web console (docs/console.md) on the HTTP port: GET /console/ and its three files, built at
 * install into dist/console/ (scripts/build-console.mjs), read once at start and served from
 * memory; GET / redirects to /console/. Every answer carries a Content-Security-Policy that
 * allows scripts, styles and connections to this origin only, no inline script or style and no
 * eval, and no framing; plus nosniff and no referrer.
 */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/console/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/console/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/console/icon.svg': { file: 'icon.svg', type: 'image/svg+xml' },
};

/**
 * Where the build put the console: dist/console/ seen from src/http/ (tests run the sources) or
 * from dist/src/http/ (the compiled server).
 */
function consoleDir(): string | undefined {
  for (const rel of ['../../dist/console/', '../../console/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}index.html`) && existsSync(`${dir}app.js`)) return dir;
  }
  return undefined;
}

/** What the console asks the server for besides the API: GET /console/settings.json. */
export interface ConsoleSettings {
  expiryThresholdsSeconds: readonly number[];
}

/** A handler for the console's paths; false for any other path (the caller routes it on). */
export type ConsoleHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

function send(res: ServerResponse, status: number, type: string, body: Buffer | string, extra = {}): void {
  res.writeHead(status, {
    ...CONSOLE_HEADERS,
    'content-type': type,
    'cache-control': 'no-cache',
    'content-length': Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

/**
 * The console's routes; `dir` overrides where its files are (tests). When the files were never
 * built, /console/ answers 503 naming the command that builds them, rather than a blank page.
 */
export function consoleHandler(settings: ConsoleSettings, dir = consoleDir()): ConsoleHandler {
  const files = new Map<string, { body: Buffer; type: string }>();
  if (dir !== undefined)
    for (const [path, f] of Object.entries(FILES))
      files.set(path, { body: readFileSync(`${dir}${f.file}`), type: f.type });
  const settingsJson = JSON.stringify({ expiry_thresholds_seconds: settings.expiryThresholdsSeconds });
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (path !== '/' && path !== '/console' && !path.startsWith('/console/')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      req.resume();
      send(res, 405, 'text/plain; charset=utf-8', 'use GET\n', { allow: 'GET, HEAD' });
      return true;
    }
    if (path === '/' || path === '/console') {
      send(res, 302, 'text/plain; charset=utf-8', 'see /console/\n', { location: '/console/' });
      return true;
    }
    if (path === '/console/settings.json') {
      send(res, 200, 'application/json', settingsJson);
      return true;
    }
    const file = files.get(path);
    if (file) send(res, 200, file.type, req.method === 'HEAD' ? '' : file.body);
    else if (files.size === 0 && path === '/console/')
      send(res, 503, 'text/plain; charset=utf-8', 'the console is not built: run npm run build:console\n');
    else send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    return true;
  };
}
