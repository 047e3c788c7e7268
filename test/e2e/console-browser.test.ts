/**
 * The web console (docs/console.md) in a real browser: Debian's Chromium, headless, driven by
 * playwright-core (which downloads no browser; `executablePath` names the system one, installed by
 * .ci/run) against a real `rotor serve` process, one per engine. One page walks every view in
 * sequence, signed in with a token of owner `web` that is not an admin:
 *
 * sign in → tokens (the other owner's token is not listed, a name made of markup renders as text,
 * the token near expiry is marked, filters) → create, copy the secret once → rotate it twice by
 * id → its family is a three-node graph → a reuse of the first secret made with grpc-js, outside
 * the browser, shows the family revoked in the open page without a reload → live events (the stream
 * cut, a rotation made meanwhile arrives after the page resumes with after_sequence), expiry
 * timeline → revoke behind its confirmation (cancelled with Escape first) → audit filters, JSON and CSV export →
 * dark mode → paging through the tokens →
 * sign out, and a reload shows the sign-in form again.
 *
 * Throughout: every request goes to Rotor's origin, nothing violates the Content-Security-Policy,
 * no dialog or page error appears, and axe-core (injected into the page) finds no serious or
 * critical violation in each view, light and dark. Screenshots of each view at 1280 px go to
 * test/.artifacts/console/, or to docs/console/ with ROTOR_TEST_UPDATE_SCREENSHOTS=1 (the README
 * shows those).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { ROOT, runCli, startServe, waitFor, type ServeProcess } from '../support/process.js';
import { failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets } from '../support/server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const CHROMIUM = process.env.ROTOR_TEST_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SHOTS =
  process.env.ROTOR_TEST_UPDATE_SCREENSHOTS === '1' ? `${ROOT}docs/console` : `${ROOT}test/.artifacts/console`;
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const XSS_NAME = '<img src=x onerror=alert(1)>';
const DAY_MS = 86_400_000;

if (!HAVE_CHROMIUM && !process.env.CI)
  console.info(`console browser test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run does)`);

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

// In CI a missing Chromium fails the test (launch throws) instead of skipping it.
describe.skipIf(!HAVE_CHROMIUM && !process.env.CI).each(ENGINES)('the web console in Chromium on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-console-'));
  const env: Record<string, string> = {
    ROTOR_DATA_DIR: dataDir,
    ROTOR_LOG_LEVEL: 'info',
    ROTOR_EXPIRY_THRESHOLDS: '1d,1h',
  };
  let db: ScratchDatabase | undefined;
  let serve: ServeProcess;
  let grpc: Api;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let origin: string;
  /** Between Chromium and the HTTP port, to cut the page's connections (the live stream's resume). */
  let proxy: TcpProxy;
  /** While the proxy cuts connections, Chromium's net::ERR_ console lines are expected. */
  let cutting = false;
  let admin: string;
  /** The signed-in token: owner web, may rotate, not an admin. */
  let web: { id: string; secret: string };
  let xss: { id: string };
  let shortLived: { id: string };
  /** The token created in the browser, then its successors. */
  const made: { ids: string[]; secret: string } = { ids: [], secret: '' };
  const foreignRequests: string[] = [];
  const problems: string[] = [];

  const create = async (ownerId: string, name: string, scopes: string[], lifetimeMs = 30 * DAY_MS) => {
    const res = await grpc.createToken(
      { kind: TokenKind.PROJECT, ownerId, name, scopes, expiresAt: inMs(Date.now(), lifetimeMs) },
      admin,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, secret: res.secret };
  };

  /** axe-core inside the page: no serious or critical violation in what is shown now. */
  const axe = async (view: string) => {
    await page.evaluate(AXE);
    const violations = await page.evaluate('axe.run(document).then((r) => r.violations)');
    const bad = (violations as AxeViolation[])
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    expect(bad, `axe on ${view}`).toEqual([]);
  };
  const shot = async (name: string) => {
    if (engine === 'sqlite') await page.screenshot({ path: `${SHOTS}/${name}.png` });
  };
  const tab = (name: string) => page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name });
  /** Waits until `text` is shown somewhere on the page. */
  const shown = (text: string) => page.getByText(text, { exact: false }).first().waitFor();

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const boot = await runCli(['bootstrap', '--create', '--owner', 'ops'], env);
    expect(boot.code).toBe(0);
    admin = boot.stdout.trim();
    issuedSecrets.add(admin);
    const launched = await Promise.all([
      startServe(env),
      chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] }),
    ]);
    [serve, browser] = launched;
    proxy = await startTcpProxy({ host: '127.0.0.1', port: serve.httpPort });
    origin = `http://127.0.0.1:${proxy.port}`;
    grpc = grpcApi({ grpcAddress: `127.0.0.1:${serve.grpcPort}` });
    web = await create('web', 'web-deployer', ['rotor:rotate', 'deploy']);
    xss = await create('web', XSS_NAME, ['deploy']);
    shortLived = await create('web', 'short-lived', ['deploy'], 2 * 3_600_000);
    await create('ops', 'ops-only', ['deploy']);

    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(`${origin}/`) && !url.startsWith('blob:') && !url.startsWith('data:'))
        foreignRequests.push(url);
    });
    page.on('console', (m) => {
      if (cutting && /net::ERR_/.test(m.text())) return;
      if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    // Starting a server and a browser on a loaded machine takes a while (Chromium alone took 14 s once).
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    grpc?.close();
    await proxy?.close();
    await serve?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('/ leads to the sign-in form; signing in keeps the token out of the URL and storage', async () => {
    await page.goto(`${origin}/`);
    expect(page.url()).toBe(`${origin}/console/`);
    const field = page.locator('input[name="token"]');
    await field.waitFor();
    expect(await field.getAttribute('type')).toBe('password');
    await axe('sign-in');
    await shot('sign-in');
    // By keyboard: the field is the first stop, Enter sends the form.
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement.name')).toBe('token');
    await page.keyboard.type(web.secret);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Tokens' }).waitFor();
    await shown(web.id);
    const kept = (await page.evaluate(
      '[location.href, JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }), document.cookie, document.documentElement.outerHTML]',
    )) as string[];
    expect(kept.length).toBe(5);
    for (const place of kept) expect(place.includes(web.secret)).toBe(false);
  });

  it('lists what the token may see; markup in a name is text; the token near expiry stands out; filters', async () => {
    const rows = page.locator('table tbody tr');
    await waitFor('three rows of owner web', async () => (await rows.count()) === 3);
    expect(await page.getByText('ops-only').count()).toBe(0);
    // The name is the button's text, not an element: no <img> was made and nothing ran.
    await page.getByRole('button', { name: XSS_NAME }).waitFor();
    expect(await page.locator('img').count()).toBe(0);
    const soon = page.locator('tr.soon');
    expect(await soon.count()).toBe(1);
    expect(await soon.textContent()).toContain('short-lived');
    expect(await soon.textContent()).toContain('expires soon');
    await axe('tokens');
    await shot('tokens');

    await page.getByLabel('State').selectOption('revoked');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No tokens match.').waitFor();
    await page.getByLabel('State').selectOption('active');
    await page.getByLabel('Kind').selectOption('project');
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitFor('the active project tokens', async () => (await rows.count()) === 3);
    await page.getByLabel('State').selectOption('');
    await page.getByLabel('Kind').selectOption('');
    await page.getByRole('button', { name: 'Filter' }).click();

    // Usable at 390 px: nothing but the tables' own scrolling regions is wider than the screen.
    await page.setViewportSize({ width: 390, height: 800 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await axe('tokens at 390 px');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('creates a token and shows its secret once, with a copy button', async () => {
    await page.getByRole('button', { name: 'Create token' }).click();
    const form = page.locator('form.create');
    await form.getByLabel('Name').fill('console-made');
    await form.getByLabel('Kind').selectOption('service_account');
    await form.getByLabel('Scopes (space separated)').fill('rotor:rotate deploy');
    await form.getByLabel('Lifetime in days').fill('7');
    await form.getByRole('button', { name: 'Create' }).click();
    const secret = page.getByTestId('secret');
    await secret.waitFor();
    made.secret = (await secret.textContent()) ?? '';
    issuedSecrets.add(made.secret);
    await page.getByRole('button', { name: 'Copy secret' }).click();
    await page.getByText('Copied to the clipboard.').waitFor();
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(made.secret);
    const self = await grpc.introspectToken({ token: made.secret }, made.secret);
    expect([self.active, self.ownerId]).toEqual([true, 'web']);
    made.ids.push(self.tokenId);
    await page.getByRole('button', { name: 'I have stored it' }).click();
    expect(((await page.evaluate('document.body.textContent')) as string).includes(made.secret)).toBe(false);
  });

  it('rotates it twice by id behind a confirmation; its family is a three-node graph', async () => {
    await page.getByRole('button', { name: 'console-made' }).click();
    await page.getByRole('heading', { name: /Token console-made/ }).waitFor();
    await axe('token');
    await shot('token');
    for (let i = 0; i < 2; i++) {
      await page.getByRole('button', { name: 'Rotate', exact: true }).click();
      const dialog = page.getByRole('dialog', { name: 'Rotate this token?' });
      await dialog.waitFor();
      expect(await dialog.textContent()).toContain('applications still holding it must switch to the successor');
      await dialog.getByRole('button', { name: 'Rotate' }).click();
      const secret = page.getByTestId('secret');
      await secret.waitFor();
      issuedSecrets.add((await secret.textContent()) ?? '');
      const next = /Rotated: \S+ is superseded by (\S+)\./.exec(
        (await page.getByRole('status').first().textContent()) ?? '',
      )?.[1];
      made.ids.push(next!);
      await page.getByRole('button', { name: 'I have stored it' }).click();
      await page.getByRole('button', { name: 'Go to successor' }).click();
      // The successor has none: the button goes once its page has loaded.
      await page.getByRole('button', { name: 'Go to successor' }).waitFor({ state: 'hidden' });
      expect(await page.locator('dl.fields dd code').first().textContent()).toBe(next);
    }
    expect(made.ids.length).toBe(3);
    await page.getByRole('button', { name: 'Show family' }).click();
    const graph = page.locator('svg.family-graph');
    await graph.waitFor();
    await waitFor('three nodes', async () => (await graph.locator('g[data-node]').count()) === 3);
    expect(await graph.locator('line.edge').count()).toBe(2);
    expect(await graph.locator('g.node.state-rotated').count()).toBe(2);
    expect(await graph.locator('g.node.state-active').count()).toBe(1);
    await axe('family');
    await shot('family');
  });

  it('a reuse made with grpc-js outside the browser shows the family revoked in the open page, without a reload', async () => {
    await page.evaluate('window.notReloaded = true');
    await page.locator('.dot.live-live').waitFor();
    const reuse = await failure(grpc.rotateToken({ idempotencyKey: newKey() }, made.secret));
    expect(reuse.rawMessage).toContain('reuse detected');
    const graph = page.locator('svg.family-graph');
    await graph.locator('g[data-mark="reuse"]').waitFor();
    await waitFor('every node revoked', async () => (await graph.locator('g.node.state-revoked').count()) === 3);
    expect(await graph.textContent()).toContain('reuse detected: family revoked');
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    await shot('family-reuse');

    await tab('Live').click();
    await page.getByRole('heading', { name: 'Live events' }).waitFor();
    await waitFor(
      'three family_revoked events',
      async () => (await page.locator('table tbody tr', { hasText: 'family_revoked' }).count()) === 3,
    );
    await axe('live');
    await shot('live');

    // The stream is cut; a rotation made meanwhile arrives once the page has reconnected with
    // after_sequence (a stream opened afresh would only see later events).
    cutting = true;
    proxy.cut();
    await page.locator('.live-status.live-reconnecting').waitFor();
    const rotated = await grpc.rotateToken({ id: shortLived.id, idempotencyKey: newKey() }, admin);
    issuedSecrets.add(rotated.secret);
    proxy.restore();
    await page.locator('table tbody tr', { hasText: shortLived.id }).filter({ hasText: 'rotated' }).waitFor();
    await page.locator('.live-status.live-live').waitFor();
    cutting = false;

    await tab('Expiry').click();
    const timeline = page.locator('svg.timeline');
    await timeline.waitFor();
    expect(await timeline.locator('g.threshold').count()).toBe(2);
    await axe('expiry');
    await shot('expiry');
  });

  it('revokes a token only after its confirmation', async () => {
    await tab('Tokens').click();
    await page.getByRole('button', { name: XSS_NAME }).click();
    await page.getByRole('heading', { name: `Token ${XSS_NAME}` }).waitFor();
    await page.getByRole('button', { name: 'Revoke', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke this token?' });
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('stops working immediately and cannot be restored');
    // Escape cancels, as Cancel does (the native modal dialog).
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect((await grpc.getToken({ id: xss.id }, admin)).token!.state).toBe(TokenState.ACTIVE);
    await page.getByRole('button', { name: 'Revoke', exact: true }).click();
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await shown(`Revoked ${xss.id}.`);
    expect((await grpc.getToken({ id: xss.id }, admin)).token!.state).toBe(TokenState.REVOKED);
    await page.locator('dl.fields .badge.state-revoked').waitFor();
  });

  it('the audit trail filters by type and exports JSON and CSV', async () => {
    await tab('Audit').click();
    await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
    const rows = page.locator('table.events tbody tr');
    await waitFor('events of owner web', async () => (await rows.count()) > 5);
    // Only owner web's events: this token may not see ops's.
    expect(await page.locator('table.events').textContent()).not.toContain('ops-only');
    await page.getByRole('checkbox', { name: 'family_revoked' }).check();
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitFor('three family_revoked events', async () => (await rows.count()) === 3);
    expect(await page.locator('table.events tbody tr:not([data-type="family_revoked"])').count()).toBe(0);
    await page.getByRole('checkbox', { name: 'revoked', exact: true }).check();
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitFor('four revocation events', async () => (await rows.count()) === 4);
    await axe('audit');
    await shot('audit');

    const [json] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export JSON' }).click(),
    ]);
    const exported = JSON.parse(readFileSync((await json.path())!, 'utf8')) as Record<string, unknown>[];
    expect(json.suggestedFilename()).toBe('rotor-events.json');
    expect(exported.map((e) => e.type).sort()).toEqual([
      'family_revoked',
      'family_revoked',
      'family_revoked',
      'revoked',
    ]);
    expect(exported.find((e) => e.type === 'revoked')).toMatchObject({ token_id: xss.id, actor: web.id });
    expect(exported.find((e) => e.type === 'family_revoked')).toMatchObject({
      actor: made.ids[0],
      reason: 'reuse_detected',
    });
    const [csv] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const lines = readFileSync((await csv.path())!, 'utf8')
      .trim()
      .split('\r\n');
    expect(lines[0]).toBe(
      'sequence,occurred_at,type,token_id,family_id,owner_id,successor_id,actor,system_actor,act_iss,act_sub,peer,reason',
    );
    expect(lines.length).toBe(5);
  });

  it('dark mode passes axe too', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await tab('Tokens').click();
    await page.getByRole('heading', { name: 'Tokens' }).waitFor();
    await axe('tokens, dark');
    await shot('tokens-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('pages through the tokens, 20 at a time', async () => {
    // 7 tokens of owner web so far (3 seeded, the successor of one, the family of 3 made in the browser); 20 more make two pages.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => create('web', `bulk-${String(i).padStart(2, '0')}`, ['deploy'])),
    );
    await tab('Tokens').click();
    await page.getByRole('heading', { name: 'Tokens' }).waitFor();
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.locator('table tbody tr');
    const next = page.getByRole('button', { name: 'Next page' });
    await waitFor('a full first page', async () => (await rows.count()) === 20 && (await next.isEnabled()));
    const first = await rows.allTextContents();
    await next.click();
    await page.getByText('Page 2').waitFor();
    await waitFor('the second page', async () => (await rows.count()) === 7);
    const second = await rows.allTextContents();
    expect(second.filter((r) => first.includes(r))).toEqual([]);
    expect(await next.isEnabled()).toBe(false);
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.getByText('Page 1').waitFor();
    await waitFor('the first page again', async () => (await rows.count()) === 20);
  });

  it('revokes a family with cascade after a dry run that names what it will revoke', async () => {
    // A small tree: the signed-in token creates P, and P creates C (C's parent is P). One expiry
    // for both: a token may not outlive the one that creates it.
    const expiresAt = inMs(Date.now(), DAY_MS);
    const mint = async (name: string, bearer: string) => {
      const res = await grpc.createToken(
        { kind: TokenKind.PROJECT, ownerId: 'web', name, scopes: ['deploy'], expiresAt },
        bearer,
      );
      issuedSecrets.add(res.secret);
      return { id: res.token!.id, secret: res.secret };
    };
    const parent = await mint('cascade-parent', web.secret);
    const child = await mint('cascade-child', parent.secret);
    // Listed oldest first: the two new tokens are on the second page (29 of owner web).
    await tab('Tokens').click();
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitFor('a full first page', async () => (await page.locator('table tbody tr').count()) === 20);
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText('Page 2').waitFor();
    await page.getByRole('button', { name: 'cascade-parent' }).click();
    await page.getByRole('heading', { name: 'Token cascade-parent' }).waitFor();
    await page.getByRole('button', { name: 'Revoke family and descendants…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke the family and everything descended from it?' });
    await dialog.waitFor();
    // The dry run changed nothing and named both tokens.
    const preview = (await dialog.textContent()) ?? '';
    expect(preview).toContain(parent.id);
    expect(preview).toContain(child.id);
    expect((await grpc.getToken({ id: child.id }, admin)).token!.state).toBe(TokenState.ACTIVE);
    await axe('cascade confirmation');
    await dialog.getByRole('button', { name: 'Revoke with cascade' }).click();
    await shown('and 1 descendant token(s) with cascade');
    expect((await grpc.getToken({ id: parent.id }, admin)).token!.state).toBe(TokenState.REVOKED);
    const c = (await grpc.getToken({ id: child.id }, admin)).token!;
    expect([c.state, c.revokeReason]).toEqual([TokenState.REVOKED, 'cascade']);
  });

  it('sign out forgets the token: the sign-in form is back, and so after a reload', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('input[name="token"]').waitFor();
    await page.reload();
    await page.locator('input[name="token"]').waitFor();
    expect(await page.locator('input[name="token"]').inputValue()).toBe('');
    expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
  });

  it('made no request to another origin and broke no rule of the CSP', () => {
    expect(foreignRequests).toEqual([]);
    expect(problems).toEqual([]);
  });
});
