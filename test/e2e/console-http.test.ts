/**
 * The web console as the HTTP port serves it (src/http/console-routes.ts, docs/console.md): the
 * security headers on every answer, the redirect of /, the settings the console reads, the size
 * budget of what a browser downloads, and ROTOR_CONSOLE=off. What the page does in a browser is
 * test/e2e/console-browser.test.ts.
 */
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

describe('the console on the HTTP port', () => {
  let s: TestServer;
  let off: TestServer;
  beforeAll(async () => {
    [s, off] = await Promise.all([
      startTestServer({ ROTOR_EXPIRY_THRESHOLDS: '7d,1h' }),
      startTestServer({ ROTOR_CONSOLE: 'off' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([s?.stop(), off?.stop()]);
  });

  it('serves the page, its script and its style with a strict CSP, nosniff and no framing', async () => {
    const page = await fetch(`${s.httpUrl}/console/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const path of [
      '/console/',
      '/console/app.js',
      '/console/app.css',
      '/console/settings.json',
      '/console/nope',
    ]) {
      const res = path === '/console/' ? page : await fetch(`${s.httpUrl}${path}`);
      expect(res.headers.get('content-security-policy'), path).toBe(CSP);
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff');
      expect(res.headers.get('x-frame-options'), path).toBe('DENY');
      expect(res.headers.get('referrer-policy'), path).toBe('no-referrer');
    }
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    // Nothing inline for the CSP to allow: one module script and one style sheet, both from 'self'.
    expect(html).toContain('<script type="module" src="app.js"></script>');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    const js = await fetch(`${s.httpUrl}/console/app.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const code = await js.text();
    expect(code).not.toMatch(/\beval\(|\bnew Function\(/);
    expect(code).not.toMatch(/https?:\/\/(?!127\.0\.0\.1|localhost)[a-z0-9.-]+\.[a-z]{2,}\/[^"'\s]*\.(js|css|woff2?)/i);
  });

  it('everything a browser downloads for the console is at most 150 KB gzipped', async () => {
    let gzipped = 0;
    for (const path of ['/console/', '/console/app.js', '/console/app.css', '/console/icon.svg']) {
      const body = Buffer.from(await (await fetch(`${s.httpUrl}${path}`)).arrayBuffer());
      gzipped += gzipSync(body, { level: 9 }).length;
    }
    console.info(`console: ${(gzipped / 1024).toFixed(1)} KiB gzipped (index.html, app.js, app.css, icon.svg)`);
    expect(gzipped).toBeGreaterThan(10_000);
    expect(gzipped).toBeLessThanOrEqual(150 * 1024);
  });

  it('/ redirects to /console/; the settings name the expiry thresholds; only GET and HEAD', async () => {
    const root = await fetch(`${s.httpUrl}/`, { redirect: 'manual' });
    expect([root.status, root.headers.get('location')]).toEqual([302, '/console/']);
    const settings = await fetch(`${s.httpUrl}/console/settings.json`);
    expect(await settings.json()).toEqual({ expiry_thresholds_seconds: [604_800, 3_600] });
    const head = await fetch(`${s.httpUrl}/console/app.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    const post = await fetch(`${s.httpUrl}/console/`, { method: 'POST', body: 'x' });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    // The API next to it is unchanged.
    expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
  });

  it('ROTOR_CONSOLE=off serves neither the console nor the redirect', async () => {
    for (const path of ['/', '/console/', '/console/app.js']) {
      const res = await fetch(`${off.httpUrl}${path}`, { redirect: 'manual' });
      expect([path, res.status]).toEqual([path, 404]);
    }
    expect((await fetch(`${off.httpUrl}/healthz`)).status).toBe(200);
  });
});
