// The web console end to end in Debian's chromium (playwright-core, never a downloaded browser):
// sign in, instances, a node's live sessions, a kill by selected id and one by filter (each through
// its confirmation; the clients get 11601), the audit trail with an intact chain, the rules and
// connection pages, and how an error shows. Run by scripts/console-test, which starts `docplane up`.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run scripts/console-test`);
  return v;
};
const bootPath = env('CONSOLE_BOOTSTRAP');
const shots = env('CONSOLE_SCREENSHOTS');
const boot = JSON.parse(readFileSync(bootPath, 'utf8'));
const { chromium } = await import(pathToFileURL(join(env('CONSOLE_NODE_MODULES'), 'playwright-core', 'index.mjs')).href);

let browser;
let page;
let step = 0;
const problems = []; // CSP violations, page errors, failed module loads
const clients = [];

async function shot(name) {
  step += 1;
  await page.screenshot({ path: join(shots, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}

// A pymongo client that runs {sleep: 1, millis} under an appName; reads the node URI from
// bootstrap.json (never from a command line). Resolves to its JSON line: {ok} or {code, codeName}.
function longOperation(appName, millis) {
  const script = `
import json, os, sys
import pymongo
from pymongo.errors import OperationFailure
uri = json.load(open(os.environ["CONSOLE_BOOTSTRAP"]))["node_uri"]
c = pymongo.MongoClient(uri, appName=sys.argv[1], serverSelectionTimeoutMS=10000)
try:
    c.admin.command({"sleep": 1, "millis": int(sys.argv[2])})
    print(json.dumps({"ok": 1}))
except OperationFailure as e:
    print(json.dumps({"code": e.code, "codeName": (e.details or {}).get("codeName")}))
`;
  const child = spawn(env('CONSOLE_PYTHON'), ['-c', script, appName, String(millis)], {
    env: { ...process.env, CONSOLE_BOOTSTRAP: bootPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  clients.push(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch {
        reject(new Error(`client ${appName} exited ${code} without a result: ${out}`));
      }
    });
  });
}

async function routeExists(path) {
  const doc = await (await fetch(boot.endpoint + '/openapi.json')).json();
  return Object.hasOwn(doc.paths || {}, path);
}

before(async () => {
  browser = await chromium.launch({ executablePath: env('CONSOLE_CHROMIUM'), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    // An API error answer is logged by chromium as a failed resource; the page shows it itself.
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of/.test(m.text())) {
      problems.push(m.text());
    }
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
});

after(async () => {
  for (const c of clients) if (c.exitCode === null) c.kill();
  if (browser) await browser.close();
});

test('the console: sign-in, sessions, kills, audit, rules, connections', { timeout: 300_000 }, async (t) => {
  // Two operations that run until killed.
  const byId = longOperation('console-e2e-by-id', 170001);
  const byFilter = longOperation('console-e2e-by-filter', 170002);

  await t.test('/ redirects to the sign-in page, served under its CSP', async () => {
    const resp = await page.goto(boot.endpoint + '/');
    assert.equal(new URL(page.url()).pathname, '/console/');
    const csp = resp.headers()['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await page.waitForSelector('#login-form');
  });

  await t.test('a wrong password shows the vendor code, message and request id once', async () => {
    await page.fill('input[name=domain]', boot.domain_name);
    await page.fill('input[name=user]', boot.user_name);
    await page.fill('input[name=password]', 'not-the-password');
    await page.fill('input[name=project]', boot.project_name);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.locator('#error code.code').count(), 1);
    assert.match(await page.locator('#error code.code').textContent(), /^(APIGW|DBS)\.\d+$/);
    assert.match(await page.locator('#error code.rid').textContent(), /^[0-9a-f]{32}$/);
    assert.equal(await page.locator('#error').locator('text=request id').count(), 1);
    await shot('sign-in-error');
  });

  await t.test('sign in and list the instances with their nodes', async () => {
    await page.fill('input[name=password]', boot.password);
    await shot('sign-in');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector(`tr[data-node="${boot.node_id}"]`);
    assert.ok(await page.locator('#error').isHidden(), 'the earlier error is cleared');
    const row = page.locator(`tr[data-node="${boot.node_id}"]`);
    assert.match(await row.textContent(), /normal/);
    const token = await page.evaluate(() => sessionStorage.getItem('docplane.console.session'));
    assert.ok(token && JSON.parse(token).project_id === boot.project_id, 'the token lives in sessionStorage');
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await shot('instances');
  });

  await t.test("open the node's sessions and find the operation", async () => {
    await page.click(`tr[data-node="${boot.node_id}"] a.sessions-link`);
    await page.waitForSelector('#session-rows');
    const row = page.locator('#session-rows tr', { hasText: '170001' });
    await row.waitFor({ timeout: 30_000 }); // found by auto-refresh at the latest
    const running = await row.locator('td.num').first().textContent();
    assert.match(running, /^\d+(\.\d)? s$|^\d+ m \d\d s$|^\d+ ms$/, `readable duration, got ${running}`);
    await shot('sessions');
  });

  let firstRecord;
  await t.test('kill the selected session through its confirmation; the client gets 11601', async () => {
    const row = page.locator('#session-rows tr', { hasText: '170001' });
    const id = await row.getAttribute('data-id');
    await row.locator('input[type=checkbox]').check();
    await page.click('#kill-selected');
    await page.waitForSelector('#confirm[open]');
    const shown = page.locator('#confirm-body tr[data-id]');
    assert.equal(await shown.count(), 1);
    assert.equal(await shown.getAttribute('data-id'), id);
    assert.match(await shown.textContent(), /170001/);
    await shot('confirm-kill-selected');
    await page.click('#confirm-ok');
    await page.waitForSelector('#notice:not([hidden]) #record-id');
    firstRecord = await page.locator('#record-id').textContent();
    assert.match(firstRecord, /^[0-9a-f-]{8,}$/, `a kill record id, got ${firstRecord}`);
    await shot('killed-selected');
    const result = await byId;
    assert.equal(result.code, 11601, JSON.stringify(result));
  });

  let secondRecord;
  await t.test('kill by filter: the dry run is what the confirmation shows', async () => {
    await page.fill('#selector input[name=app_name]', 'console-e2e-by-filter');
    await page.click('#kill-matching');
    await page.waitForSelector('#confirm[open]');
    const shown = page.locator('#confirm-body tr[data-id]');
    assert.equal(await shown.count(), 1);
    assert.match(await shown.textContent(), /170002/);
    assert.match(await shown.locator('td.outcome').textContent(), /would_kill/);
    await shot('confirm-kill-by-filter');
    await page.click('#confirm-ok');
    await page.waitForSelector('#kill-result tr[data-id]');
    assert.match(await page.locator('#kill-result td.outcome').textContent(), /^killed/);
    secondRecord = await page.locator('#record-id').textContent();
    assert.match(secondRecord, /^[0-9a-f-]{8,}$/);
    assert.notEqual(secondRecord, firstRecord);
    await shot('killed-by-filter');
    const result = await byFilter;
    assert.equal(result.code, 11601, JSON.stringify(result));
  });

  let refusedRecord;
  await t.test('a kill by filter is refused when more match than its dry run showed', async () => {
    const dryRun = (app) => page.evaluate(async ([node, app]) => {
      const s = JSON.parse(sessionStorage.getItem('docplane.console.session'));
      const r = await fetch(`/v3/${s.project_id}/nodes/${node}/sessions/kill`, {
        method: 'POST',
        headers: { 'X-Auth-Token': s.token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ filter: { app_name: app }, max: 1000, dry_run: true }),
      });
      return (await r.json()).matched;
    }, [boot.node_id, app]);
    const until = async (app, n) => {
      for (let i = 0; i < 100 && (await dryRun(app)) !== n; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(await dryRun(app), n);
    };
    const first = longOperation('console-e2e-race', 170003);
    await until('console-e2e-race', 1);
    await page.fill('#selector input[name=app_name]', 'console-e2e-race');
    await page.click('#kill-matching');
    await page.waitForSelector('#confirm[open]');
    assert.equal(await page.locator('#confirm-body tr[data-id]').count(), 1);
    // A second one starts while the operator reads the confirmation.
    const second = longOperation('console-e2e-race', 170004);
    await until('console-e2e-race', 2);
    await page.click('#confirm-ok');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.locator('#error code.code').textContent(), 'DBS.900032');
    await page.waitForSelector('#notice:not([hidden]) #record-id');
    refusedRecord = await page.locator('#record-id').textContent();
    assert.match(await page.locator('#notice').textContent(), /outcome refused/);
    await shot('kill-by-filter-refused');
    // Nothing was killed: both still run. A new dry run shows both; kill them.
    await page.click('#kill-matching');
    await page.waitForSelector('#confirm[open]');
    assert.equal(await page.locator('#confirm-body tr[data-id]').count(), 2);
    await page.click('#confirm-ok');
    await page.waitForSelector('#kill-result tr[data-id]');
    assert.ok(await page.locator('#error').isHidden(), 'the refusal is no longer shown');
    for (const r of [await first, await second]) assert.equal(r.code, 11601, JSON.stringify(r));
  });

  await t.test('the audit trail lists both records and an intact chain', async () => {
    await page.click('#nav a[data-nav=audit]');
    await page.waitForSelector('#chain-status');
    assert.equal(await page.locator('#chain-status').textContent(), 'Intact');
    for (const id of [firstRecord, secondRecord]) {
      const rec = page.locator(`#record-rows tr[data-record="${id}"]`);
      await rec.waitFor();
      assert.match(await rec.textContent(), /killed/);
    }
    assert.match(await page.locator(`#record-rows tr[data-record="${refusedRecord}"]`).textContent(), /refused/);
    await shot('audit');
  });

  await t.test('1,000 sessions: pages of at most 100 rows, both orders', async () => {
    // The node's answer is replaced by 1,000 made-up sessions, paged as the API pages them (longest
    // first), to see what the page does with them; the API's own paging is tested in Rust.
    const all = Array.from({ length: 1000 }, (_, i) => ({
      id: String(10_000 + i), active: true, operation: `{"find":"c${i}"}`, type: 'query',
      cost_time: String((1000 - i) * 1_000_000), plan_summary: 'COLLSCAN', host: 'h', client: '10.0.0.1:4000',
      description: `conn${i}`, namespace: 'shop.orders',
    }));
    const asked = [];
    const listing = (url) => url.pathname.endsWith(`/nodes/${boot.node_id}/sessions`);
    await page.route(listing, (route) => {
      const u = new URL(route.request().url());
      const offset = Number(u.searchParams.get('offset') || 0);
      const limit = Number(u.searchParams.get('limit') || 10);
      asked.push([offset, limit]);
      route.fulfill({ json: { total_count: all.length, sessions: all.slice(offset, offset + limit) } });
    });
    try {
      await page.goto(`${boot.endpoint}/console/#/nodes/${boot.node_id}/sessions`);
      await page.locator('#session-rows tr[data-id]').first().waitFor();
      await page.check('#pause');
      await page.selectOption('#page-size', '100');
      await page.locator('#page-info', { hasText: '1–100 of 1000' }).waitFor();
      assert.equal(await page.locator('#session-rows tr[data-id]').count(), 100);
      assert.equal(await page.locator('#session-rows tr[data-id]').first().getAttribute('data-id'), '10000');
      assert.match(await page.locator('#session-rows tr[data-id] td.num').first().textContent(), /^16 m 40 s$/);
      await page.click('#sort'); // shortest first: the API's last page, reversed
      await page.locator('#session-rows tr[data-id="10999"]').waitFor();
      assert.equal(await page.locator('#session-rows tr[data-id]').first().getAttribute('data-id'), '10999');
      assert.deepEqual(asked.at(-1), [900, 100]);
      await page.click('.pager button:has-text("Next")');
      await page.locator('#page-info', { hasText: '101–200 of 1000' }).waitFor();
      assert.deepEqual(asked.at(-1), [800, 100]);
      assert.equal(await page.locator('#session-rows tr[data-id]').count(), 100);
      await shot('sessions-1000');
    } finally {
      await page.unroute(listing);
    }
  });

  const instanceId = await page.evaluate(async () => {
    const s = JSON.parse(sessionStorage.getItem('docplane.console.session'));
    const r = await fetch(`/v3/${s.project_id}/instances`, { headers: { 'X-Auth-Token': s.token } });
    return (await r.json()).instances[0].id;
  });

  await t.test('kill-op rules: create, enable, disable (or the error, where the API lacks them)', async () => {
    await page.goto(`${boot.endpoint}/console/#/instances/${instanceId}/rules`);
    if (await routeExists('/v3/{project_id}/instances/{instance_id}/kill-op-rule')) {
      await page.check('#new-rule input[value=query]');
      await page.fill('#new-rule input[name=secs_running]', '30');
      await page.click('#new-rule button[type=submit]');
      const row = page.locator('#rule-rows tr[data-rule]').first();
      await row.waitFor();
      assert.match(await row.textContent(), /DISABLED/);
      // The form is back to its defaults for the next rule.
      assert.equal(await page.inputValue('#new-rule input[name=secs_running]'), '0');
      assert.equal(await page.inputValue('#new-rule input[name=max_concurrency]'), '0');
      await row.locator('button[data-action=enable]').click();
      await page.locator('#rule-rows tr[data-rule]', { hasText: 'ENABLED' }).first().waitFor();
      await shot('rules');
      await page.locator('#rule-rows button[data-action=disable]').first().click();
      await page.locator('#rule-rows button[data-action=enable]').first().waitFor();
    } else {
      await page.waitForSelector('#error:not([hidden]) code.rid');
      assert.match(await page.locator('#error code.code').textContent(), /^DBS\.\d+$/);
      await shot('rules-unavailable');
    }
  });

  await t.test('connection statistics (or the error, where the API lacks them)', async () => {
    await page.goto(`${boot.endpoint}/console/#/instances/${instanceId}/connections?node=${boot.node_id}`);
    if (await routeExists('/v3/{project_id}/instances/{instance_id}/conn-statistics')) {
      await page.waitForSelector('#conn-total');
      assert.ok(Number(await page.locator('#conn-total').textContent()) >= 0);
      await shot('connections');
    } else {
      await page.waitForSelector('#error:not([hidden]) code.rid');
      await shot('connections-unavailable');
    }
  });

  await t.test('sign out drops the token', async () => {
    await page.click('#signout');
    await page.waitForSelector('#login-form');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('docplane.console.session')), null);
  });

  assert.deepEqual(problems, [], 'no CSP violation, page error or failed request');
});
