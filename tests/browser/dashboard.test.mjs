// Browser tests of the dashboard: the real server (target/debug/traffix), real nodes and curl
// clients, Debian's Chromium driven by playwright-core. One server for the whole file; the flows
// run in order and each sets up the users it needs. The last test saves the screenshots of
// docs/screenshots/ with the data the flows left behind. Run with tests/browser/run.sh.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  BIN, ROOT, SCREENSHOTS, Traffix, launchBrowser, markDocument, micros, openPage, sameDocument, screenshot, signIn, startFakeBotApi, startFakeCryptoPay, startOrigin,
  run, stopProcess, waitFor,
} from './harness.mjs';

let t;
let origin;
let cryptoPay;
let bot;
const BOT_TOKEN = '4242:browserBotToken';
const CRYPTOPAY_TOKEN = '4711:AAbrowserTestToken';
let browser;
let failed = false;
const users = {};
let nodeA = null; // carol's node, online from the first flow on

before(async () => {
  origin = await startOrigin();
  cryptoPay = await startFakeCryptoPay(CRYPTOPAY_TOKEN);
  bot = await startFakeBotApi(BOT_TOKEN);
  // 1000.00 per GB is one micro-unit per byte: money visibly moves while a download runs. No
  // payment provider is enabled at start (the payments flow turns Crypto Pay on); its API is
  // the fake one, looked at every second or two.
  t = await Traffix.start({
    env: {
      TRAFFIX_BILLING__PRICE_PER_GB: '1000.00',
      TRAFFIX_PAYMENTS__CRYPTOPAY_API_URL: cryptoPay.url,
      TRAFFIX_PAYMENTS__CRYPTOPAY_POLL_SECS: '1',
      TRAFFIX_PAYMENTS__CRYPTOPAY_POLL_MAX_SECS: '2',
      // The Telegram bot, against a fake Bot API (the Telegram flow).
      TRAFFIX_TELEGRAM__BOT_TOKEN: BOT_TOKEN,
      TRAFFIX_TELEGRAM__API_URL: bot.url,
      TRAFFIX_TELEGRAM__POLL_TIMEOUT_SECS: '0',
    },
  });
  browser = await launchBrowser();
  users.alice = await t.addUser('alice', { credit: '1000.00' }); // a client
  users.carol = await t.addUser('carol'); // owns the nodes
  users.bob = await t.addUser('bob'); // gets credited
  users.mallory = await t.addUser('mallory'); // types a wrong password
  users.dave = await t.addUser('dave'); // disabled, then enabled again
  users.paula = await t.addUser('paula'); // tops up with Crypto Pay
}, { timeout: 120_000 });

after(async () => {
  if (browser) await browser.close();
  if (origin) await origin.close();
  if (cryptoPay) await cryptoPay.close();
  if (bot) await bot.close();
  if (t) {
    await t.stop({ keep: failed });
    if (failed) console.error(`# kept the server's data and logs in ${t.tmp}`);
  }
}, { timeout: 60_000 });

/** A test whose failure leaves a screenshot and the server's log behind. */
function flow(name, fn) {
  // The bound for a stuck browser or process; every wait inside has its own, shorter one.
  test(name, { timeout: 180_000 }, async () => {
    const pages = [];
    const open = async (opts) => {
      const p = await openPage(browser, t, opts);
      pages.push(p);
      return p;
    };
    try {
      await fn(open);
      for (const p of pages) assert.deepEqual(p.problems, [], 'the page had errors');
    } catch (e) {
      failed = true;
      for (const [i, p] of pages.entries()) {
        const file = path.join(t.tmp, `failure-${name.replace(/\W+/g, '-')}-${i}.png`);
        await p.screenshot({ path: file, fullPage: true }).catch(() => {});
        console.error(`# failure screenshot: ${file}`);
      }
      console.error(`# server log (tail):\n${t.log().split('\n').slice(-40).join('\n')}`);
      throw e;
    } finally {
      for (const p of pages) await p.context().close().catch(() => {});
    }
  });
}

const text = async (page, testid) => (await page.getByTestId(testid).textContent()).replace(/\u00a0/g, ' ').trim();

/** Waits until the element's text satisfies `ok` (a predicate or an exact string); returns it. */
async function waitText(page, testid, ok, what = testid) {
  const pred = typeof ok === 'function' ? ok : (s) => s === ok;
  let last = null;
  try {
    return await waitFor(what, async () => {
      last = await text(page, testid);
      return pred(last) ? last : null;
    });
  } catch (e) {
    throw new Error(`${e.message}; its text was ${JSON.stringify(last)}`);
  }
}

async function ensureNodeOnline() {
  if (!nodeA) nodeA = await t.startNode('carol', '127.0.0.2');
  await nodeA.online();
  return nodeA;
}

/* ---------- the flows ---------- */

flow('the admin sees a node come online live (SSE, no reload)', async (open) => {
  const nodes = await open();
  await signIn(nodes, t, 'admin', t.adminPassword, '#/nodes');
  const overview = await open();
  await signIn(overview, t, 'admin', t.adminPassword, '#/overview');
  for (const p of [nodes, overview]) await waitFor('the live feed', async () => (await p.getByTestId('live-status').getAttribute('data-state')) === 'live');
  await nodes.getByTestId('nodes-empty').waitFor();
  await waitText(overview, 'kpi-nodes-online-value', '0 / 0');
  await markDocument(nodes);
  await markDocument(overview);

  // Only now does the node start.
  nodeA = await t.startNode('carol', '127.0.0.2');
  await nodes.getByTestId(`node-row-${nodeA.vip}`).waitFor();
  await waitText(nodes, `node-status-${nodeA.vip}`, (s) => s === 'online', 'the node shown online');
  await waitText(nodes, 'nodes-summary', (s) => s.startsWith('1 online of 1 paired'));
  assert.match(await text(nodes, `node-row-${nodeA.vip}`), /carol/);
  // A Linux node sends no attestation chain: device trust none (docs/trust.md).
  await waitText(nodes, `node-trust-${nodeA.vip}`, (s) => s.startsWith('none') && s.includes('no attestation'), 'the node trust shown');
  await waitText(overview, 'kpi-nodes-online-value', '1 / 1');
  assert.ok(await sameDocument(nodes), 'the nodes page was not reloaded');
  assert.ok(await sameDocument(overview), 'the overview was not reloaded');
  // The server agrees.
  assert.ok((await t.devices()).some((d) => d.vip === nodeA.vip && d.online && d.owner === 'carol'));
});

flow('the admin credits a user through the credit dialog', async (open) => {
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/users');
  await waitText(page, 'user-balance-bob', '$0.00');
  await page.getByTestId('user-credit-bob').click();
  const dialog = page.getByTestId('credit-dialog');
  await dialog.waitFor();
  await page.getByTestId('credit-amount').fill('12.5');
  await page.getByTestId('credit-reason').fill('bank transfer 1234');
  await page.getByTestId('credit-dialog-submit').click();
  // The amount and the balance it makes, to confirm; going back changes nothing.
  const confirm = page.getByTestId('credit-confirm-dialog');
  await confirm.waitFor();
  assert.equal(await text(page, 'credit-confirm-amount'), '$12.50');
  assert.equal(await text(page, 'credit-confirm-before'), '$0.00');
  assert.equal(await text(page, 'credit-confirm-after'), '$12.50');
  await page.getByTestId('credit-confirm-dialog-cancel').click();
  await confirm.waitFor({ state: 'detached' });
  assert.ok(await dialog.isVisible(), 'back in the credit dialog');
  assert.equal((await t.user('bob')).balance_micros, 0);
  await page.getByTestId('credit-dialog-submit').click();
  await confirm.waitFor();
  await page.getByTestId('credit-confirm-dialog-submit').click();
  await dialog.waitFor({ state: 'detached' });
  await waitText(page, 'user-balance-bob', '$12.50', 'the new balance in the table');
  await page.getByTestId('toast-success').filter({ hasText: 'Credited bob' }).waitFor();
  assert.equal((await t.user('bob')).balance_micros, 12_500_000);
});

flow('the admin bans a node with a reason', async (open) => {
  await ensureNodeOnline();
  const nodeB = await t.startNode('carol', '127.0.0.3');
  await nodeB.online();
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/nodes');
  await waitText(page, `node-status-${nodeB.vip}`, 'online');
  await page.getByTestId(`node-ban-${nodeB.vip}`).click();
  const dialog = page.getByTestId('ban-dialog');
  await dialog.waitFor();
  // A ban needs a reason.
  await page.getByTestId('ban-dialog-submit').click();
  await waitText(page, 'ban-dialog-error', (s) => /reason/i.test(s));
  await page.getByTestId('ban-reason').fill('fraud report 42');
  await page.getByTestId('ban-dialog-submit').click();
  await dialog.waitFor({ state: 'detached' });
  await waitText(page, `node-banned-${nodeB.vip}`, (s) => s.includes('banned') && s.includes('fraud report 42'));
  await page.getByTestId(`node-unban-${nodeB.vip}`).waitFor();
  const d = (await t.devices()).find((x) => x.vip === nodeB.vip);
  assert.equal(d.banned, true);
  assert.equal(d.ban_reason, 'fraud report 42');
  // The other node is untouched.
  await waitText(page, `node-status-${nodeA.vip}`, 'online');
});

flow('the admin flags a node with a note; its owner reads why, and unmet demand shows on the overview', async (open) => {
  await ensureNodeOnline();
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/nodes');
  await waitText(page, `node-quality-state-${nodeA.vip}`, (s) => s.includes('healthy'), 'measured and healthy');
  await page.getByTestId(`node-quality-${nodeA.vip}`).click();
  const dialog = page.getByTestId('quality-dialog');
  await dialog.waitFor();
  await page.getByTestId('quality-state').selectOption('flagged');
  // An override needs a note.
  await page.getByTestId('quality-dialog-submit').click();
  await waitText(page, 'quality-dialog-error', (s) => /note/i.test(s));
  await page.getByTestId('quality-note').fill('abuse report 17');
  await page.getByTestId('quality-dialog-submit').click();
  await dialog.waitFor({ state: 'detached' });
  await waitText(page, `node-quality-state-${nodeA.vip}`, (s) => s.includes('flagged'));
  const d = (await t.devices()).find((x) => x.vip === nodeA.vip);
  assert.equal(d.quality_state, 'flagged');
  assert.equal(d.quality.admin.note, 'abuse report 17');
  // The owner's portal says why the device gets no traffic.
  const portal = await open();
  await signIn(portal, t, 'carol', users.carol.password, '#/me');
  await waitText(portal, `device-quality-${nodeA.vip}`, (s) => s.includes('flagged'));
  await waitText(portal, `device-reasons-${nodeA.vip}`, (s) => s.includes('No traffic because') && s.includes('abuse report 17'));
  // Back to automatic; the overview counts a request that found no node.
  await t.cli(['device', 'quality', nodeA.vip, '--set', 'auto', '--note', 'cleared']);
  const overview = await open();
  await signIn(overview, t, 'admin', t.adminPassword, '#/overview');
  await waitText(overview, 'overview-quality', (s) => /\d+ healthy/.test(s));
  await overview.getByTestId('unmet-card').waitFor();
  // A client asks for a country no node serves: the overview and the map say where to recruit.
  const asked = await t.curl('alice-country-de', users.alice.proxyPassword, origin.url('/bytes/10')).exited;
  assert.notEqual(asked.code, 0, 'no node in Germany');
  await waitText(overview, 'unmet-row-DE-no_node', (s) => /^DE.*\D1$/.test(s));
  await overview.evaluate(() => { location.hash = '#/nodes'; });
  await waitText(overview, 'nodes-country-unmet-DE', (s) => /1 unmet/.test(s));
  await overview.getByTestId('map-legend-unmet').waitFor();
  await waitFor('Germany outlined on the map', async () =>
    /\bunmet\b/.test(await overview.getByTestId('map-country-DE').first().getAttribute('class') || ''));
});

flow('the admin approves a withdrawal', async (open) => {
  await t.cli(['user', 'credit', 'carol', '10', '--reason', 'earnings for the test']);
  const w = await t.cliJson(['withdrawal', 'request', 'carol', '6', '--to', 'IBAN DE89 3704 0044 0532 0130 00']);
  assert.equal(w.status, 'pending');
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/withdrawals');
  await waitText(page, `withdrawal-row-${w.id}`, (s) => s.includes('pending') && s.includes('carol') && s.includes('$6.00'));
  await page.getByTestId(`withdrawal-approve-${w.id}`).click();
  const dialog = page.getByTestId('approve-dialog');
  await dialog.waitFor();
  await page.getByTestId('approve-reason').fill('paid, bank ref 5678');
  await page.getByTestId('approve-dialog-submit').click();
  await dialog.waitFor({ state: 'detached' });
  await waitText(page, `withdrawal-row-${w.id}`, (s) => s.includes('approved') && s.includes('paid, bank ref 5678'));
  assert.equal(await page.getByTestId(`withdrawal-approve-${w.id}`).count(), 0);
  const list = await t.cliJson(['withdrawal', 'list']);
  assert.equal(list.find((x) => x.id === w.id).status, 'approved');
});

flow('a client sees its balance fall while it downloads through the proxy', async (open) => {
  await ensureNodeOnline();
  const page = await open();
  await signIn(page, t, 'alice', users.alice.password, '#/me');
  const start = micros(await waitText(page, 'balance', (s) => /\d/.test(s)));
  assert.ok(start > 0n, 'alice has money');
  await markDocument(page);
  const curl = t.curl('alice', users.alice.proxyPassword, origin.url('/forever'));
  try {
    const first = micros(await waitText(page, 'balance', (s) => micros(s) < start, 'the balance to fall'));
    // And it keeps falling while the download runs.
    await waitText(page, 'balance', (s) => micros(s) < first, 'the balance to fall again');
    assert.ok(await sameDocument(page), 'the portal was not reloaded');
    assert.equal(curl.exitCode, null, 'the download is still running');
  } finally {
    await stopProcess(curl);
  }
  // The server bills what it relayed: the client's posted balance fell too.
  await waitFor('the usage to be posted', async () => BigInt((await t.user('alice')).balance_micros) < start);
});

flow('a client copies its credentials', async (open) => {
  const page = await open({ permissions: ['clipboard-read', 'clipboard-write'] });
  await signIn(page, t, 'alice', users.alice.password, '#/me');
  await page.getByTestId('curl-socks5').waitFor();
  await page.getByTestId('copy-curl-socks5').click();
  await page.getByTestId('toast-success').filter({ hasText: 'copied' }).waitFor();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  assert.ok(clip.includes(`curl --socks5-hostname 'alice:${users.alice.proxyPassword}@${t.socks}'`), `clipboard: ${clip}`);
  assert.equal(clip, await text(page, 'curl-socks5'));
  await page.getByTestId('copy-proxy-username').click();
  await waitFor('the user name in the clipboard', async () => (await page.evaluate(() => navigator.clipboard.readText())) === 'alice');
});

flow('bad input: a wrong password shows the API reason on the login page', async (open) => {
  const api = await t.apiLogin('mallory', 'not-the-password');
  assert.equal(api.status, 401);
  const reason = api.json().reason;
  assert.ok(reason, 'the API gives a reason');
  const page = await open();
  await page.goto(t.url);
  await page.getByTestId('login-username').fill('mallory');
  await page.getByTestId('login-password').fill('not-the-password');
  await page.getByTestId('login-submit').click();
  await waitText(page, 'login-error', reason);
  assert.equal(await page.getByTestId('shell').count(), 0, 'still signed out');
  // The right password still works.
  await page.getByTestId('login-password').fill(users.mallory.password);
  await page.getByTestId('login-submit').click();
  await waitText(page, 'portal-user', 'mallory');
});

flow('bad input: an invalid credit shows the error in the dialog and changes nothing', async (open) => {
  const before = (await t.user('bob')).balance_micros;
  const ledgerBefore = (await t.cliJson(['ledger', 'list', '--user', 'bob'])).length;
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/users');
  const balance = await waitText(page, 'user-balance-bob', (s) => /\d/.test(s));
  await page.getByTestId('user-credit-bob').click();
  const dialog = page.getByTestId('credit-dialog');
  await dialog.waitFor();
  // Not a number: refused in the dialog before anything is sent.
  await page.getByTestId('credit-amount').fill('twelve');
  await page.getByTestId('credit-reason').fill('bad input test');
  await page.getByTestId('credit-dialog-submit').click();
  await waitText(page, 'credit-dialog-error', (s) => /amount/i.test(s));
  assert.equal(await page.getByTestId('credit-amount').getAttribute('aria-invalid'), 'true');
  // Well-formed but too large: the API refuses it and the dialog shows its reason.
  const huge = '10000000000000';
  const token = (await t.apiLogin('admin', t.adminPassword)).json().access_token;
  const api = await t.api('POST', '/admin/users/bob/credit', { amount: huge, reason: 'bad input test' }, token);
  assert.equal(api.status, 400, `the API refuses ${huge}: ${api.text}`);
  await page.getByTestId('credit-amount').fill(huge);
  await page.getByTestId('credit-dialog-submit').click();
  await page.getByTestId('credit-confirm-dialog-submit').click();
  const shown = await waitText(page, 'credit-dialog-error', (s) => !/Enter an amount/.test(s) && s.length > 0, 'the API reason in the dialog');
  assert.equal(shown, api.json().reason, 'the dialog shows the API reason');
  assert.ok(await dialog.isVisible(), 'the dialog stays open');
  await page.getByTestId('credit-dialog-cancel').click();
  await dialog.waitFor({ state: 'detached' });
  // Nothing changed.
  assert.equal(await text(page, 'user-balance-bob'), balance);
  assert.equal((await t.user('bob')).balance_micros, before);
  assert.equal((await t.cliJson(['ledger', 'list', '--user', 'bob'])).length, ledgerBefore);
});

flow('the admin edits the billing settings; the portal shows the new minimum payout', async (open) => {
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/settings');
  await waitFor('the current values', async () => (await page.getByTestId('settings-price').inputValue()) === '1000.00');
  assert.equal(await page.getByTestId('settings-fee').inputValue(), '30');
  assert.equal(await page.getByTestId('settings-min-payout').inputValue(), '5.00');
  await page.getByTestId('settings-note').waitFor();
  // The certificate card: self-signed (ACME is off here), so no Renew now; the pin is the server's.
  await waitText(page, 'cert-source-badge', 'self-signed');
  assert.equal(await page.getByTestId('cert-pin').locator('dd').innerText(), (await t.cliJson(['tls', 'status'])).pin);
  assert.equal(await page.getByTestId('cert-renew').count(), 0);
  // Out of range: the API's reason, nothing saved.
  await page.getByTestId('settings-fee').fill('150');
  await page.getByTestId('settings-save').click();
  const err = await waitText(page, 'settings-error', (s) => s.length > 0);
  assert.match(err, /150/);
  assert.equal((await t.cliJson(['settings', 'show'])).platform_fee_percent, 30);
  // A valid change.
  await page.getByTestId('settings-fee').fill('25');
  await page.getByTestId('settings-min-payout').fill('2.50');
  await page.getByTestId('settings-save').click();
  await page.getByTestId('toast-success').filter({ hasText: /fee 25%.*minimum payout \$2\.50/ }).waitFor();
  assert.ok(await page.getByTestId('settings-error').isHidden());
  await waitText(page, 'settings-updated-by', 'admin');
  const s = await t.cliJson(['settings', 'show']);
  assert.equal(s.platform_fee_percent, 25);
  assert.equal(s.min_payout_micros, 2_500_000);
  assert.equal(s.price_per_gb_micros, 1_000_000_000, 'the price was not sent, so it is unchanged');

  // The node owner sees the minimum before typing, and the form holds to it.
  const portal = await open();
  await signIn(portal, t, 'carol', users.carol.password, '#/me');
  await waitText(portal, 'withdraw-minimum', (s) => s.includes('$2.50'));
  await portal.getByTestId('withdraw-amount').fill('1');
  await portal.getByTestId('withdraw-destination').fill('IBAN DE89 3704 0044 0532 0130 00');
  await portal.getByTestId('withdraw-submit').click();
  await waitText(portal, 'withdraw-error', (s) => s.includes('$2.50'));
});

flow('the admin enables a disabled user', async (open) => {
  await t.cli(['user', 'disable', 'dave', '--reason', 'chargeback']);
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/users');
  await page.getByTestId('user-enable-dave').click();
  const dialog = page.getByTestId('enable-dialog');
  await dialog.waitFor();
  await page.getByTestId('enable-dialog-submit').click();
  await dialog.waitFor({ state: 'detached' });
  await page.getByTestId('user-disable-dave').waitFor();
  assert.equal(await page.getByTestId('user-enable-dave').count(), 0);
  assert.equal((await t.user('dave')).disabled, false);
});

flow('the dashboard reads amounts exactly as the server does (tests/vectors/amounts.json)', async (open) => {
  const vectors = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/vectors/amounts.json'), 'utf8'));
  assert.ok(vectors.unsigned.length >= 40);
  assert.ok(vectors.signed.length >= 40);
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/users');
  // The module as the server serves it, in the browser: unsigned as Micros::parse, signed as
  // parse_signed.
  for (const [section, signed, example] of [['unsigned', false, /like 12\.50/], ['signed', true, /like -13\.50/]]) {
    const got = await page.evaluate(async ({ cases, signed }) => {
      const { parseAmount } = await import('/assets/js/format.js');
      return cases.map((c) => {
        const r = parseAmount(c.input, { signed });
        return r.ok ? { ok: true, micros: r.micros.toString() } : { ok: false, error: r.error, message: r.message };
      });
    }, { cases: vectors[section], signed });
    const differ = [];
    vectors[section].forEach((c, i) => {
      const g = got[i];
      const same = c.ok ? g.ok && g.micros === c.micros : !g.ok && g.error === c.error;
      if (!same) differ.push(`${JSON.stringify(c.input)}: want ${JSON.stringify(c)}, got ${JSON.stringify(g)}`);
      if (!g.ok) assert.match(g.message, example, 'a refusal shows the expected form');
    });
    assert.deepEqual(differ, [], `the dashboard and the server agree on the ${section} cases`);
  }
});

flow('bad input: a comma, sign or exponent is refused in every amount field', async (open) => {
  await t.cli(['user', 'credit', 'carol', '3', '--reason', 'for the comma test']);
  const before = { bob: (await t.user('bob')).balance_micros, carol: (await t.user('carol')).balance_micros };
  const admin = await open();
  await signIn(admin, t, 'admin', t.adminPassword, '#/users');
  await admin.getByTestId('user-credit-bob').click();
  await admin.getByTestId('credit-dialog').waitFor();
  await admin.getByTestId('credit-reason').fill('comma test');
  for (const bad of ['1,5', '-1', '1e3', '.5', '1.', '0x10', '1.0000001', '１２']) {
    await admin.getByTestId('credit-amount').fill(bad);
    await admin.getByTestId('credit-dialog-submit').click();
    await waitText(admin, 'credit-dialog-error', (m) => /like 12\.50/.test(m), `the refusal of ${bad}`);
    assert.equal(await admin.getByTestId('credit-amount').getAttribute('aria-invalid'), 'true');
    assert.equal(await admin.getByTestId('credit-confirm-dialog').count(), 0, `no confirmation for ${bad}`);
  }
  await admin.getByTestId('credit-dialog-cancel').click();

  // Settings: "3,00" is not 300.
  await admin.evaluate(() => { location.hash = '#/settings'; });
  await waitFor('the settings form', async () => (await admin.getByTestId('settings-price').inputValue()) !== '');
  const price = await admin.getByTestId('settings-price').inputValue();
  await admin.getByTestId('settings-price').fill('3,00');
  await admin.getByTestId('settings-save').click();
  await waitText(admin, 'settings-error', (m) => /Price per GB: Enter an amount like 3\.00/.test(m));
  await admin.getByTestId('settings-price').fill(price);
  await admin.getByTestId('settings-min-payout').fill('+2');
  await admin.getByTestId('settings-save').click();
  await waitText(admin, 'settings-error', (m) => /Minimum payout: Enter an amount like 5\.00/.test(m));

  // The portal: a withdrawal of "5,00" is not 500, a sub-user cap of "1,5" GB is not 15.
  const portal = await open();
  await signIn(portal, t, 'carol', users.carol.password, '#/me');
  await portal.getByTestId('withdraw-amount').fill('5,00');
  await portal.getByTestId('withdraw-destination').fill('IBAN DE89 3704 0044 0532 0130 00');
  await portal.getByTestId('withdraw-submit').click();
  await waitText(portal, 'withdraw-error', (m) => /like 12\.50/.test(m));
  assert.equal(await portal.getByTestId('withdraw-confirm-dialog').count(), 0);
  await portal.getByTestId('subuser-create').click();
  await portal.getByTestId('subuser-dialog').waitFor();
  await portal.getByTestId('subuser-name').fill('carol_sub');
  await portal.getByTestId('subuser-cap').fill('1,5');
  await portal.getByTestId('subuser-dialog-submit').click();
  await waitText(portal, 'subuser-dialog-error', (m) => /GB.*like 5\.5/.test(m));
  await portal.getByTestId('subuser-dialog-cancel').click();
  const carolToken = (await t.apiLogin('carol', users.carol.password)).json().access_token;
  const subs = await t.api('GET', '/me/sub-users', undefined, carolToken);
  assert.deepEqual(subs.json().map((u) => u.name), [], 'no sub-user was created');

  // Nothing changed anywhere.
  assert.equal((await t.user('bob')).balance_micros, before.bob);
  assert.equal((await t.user('carol')).balance_micros, before.carol);
  assert.equal((await t.cliJson(['settings', 'show'])).min_payout_micros, 2_500_000);
  assert.equal((await t.cliJson(['withdrawal', 'list'])).filter((w) => w.user === 'carol' && w.status === 'pending').length, 0);
});

flow('a withdrawal shows the amount and the balance left before it is requested', async (open) => {
  const page = await open();
  await signIn(page, t, 'carol', users.carol.password, '#/me');
  const avail = micros(await waitText(page, 'withdraw-available', (m) => /\d/.test(m)));
  assert.ok(avail >= 3_000_000n, `carol has money (${avail})`);
  await page.getByTestId('withdraw-amount').fill('2.75');
  await page.getByTestId('withdraw-destination').fill('PayPal carol@example.com');
  await page.getByTestId('withdraw-submit').click();
  await page.getByTestId('withdraw-confirm-dialog').waitFor();
  assert.equal(await text(page, 'withdraw-confirm-amount'), '$2.75');
  assert.equal(micros(await text(page, 'withdraw-confirm-before')), avail);
  assert.equal(micros(await text(page, 'withdraw-confirm-after')), avail - 2_750_000n);
  await page.getByTestId('withdraw-confirm-dialog-submit').click();
  await page.getByTestId('toast-success').filter({ hasText: 'Withdrawal requested' }).waitFor();
  const w = (await t.cliJson(['withdrawal', 'list'])).find((x) => x.user === 'carol' && x.status === 'pending');
  assert.equal(w.amount_micros, 2_750_000);
  // Rejected again, so that later flows see carol's balance as before.
  await t.cli(['withdrawal', 'reject', String(w.id), '--reason', 'test only']);
});

/** Reads a download the page starts by clicking `testid`: {name, text}. */
async function download(page, testid) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testid).click()]);
  const file = await d.path();
  return { name: d.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

const STAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/;

flow('the admin ledger pages past the first page, filters by date and exports what it selects', async (open) => {
  await t.addUser('erin');
  const token = (await t.apiLogin('admin', t.adminPassword)).json().access_token;
  for (let i = 1; i <= 7; i++) {
    const reason = i === 4 ? '=HYPERLINK("http://evil.example")' : `invoice ${i}`;
    const r = await t.api('POST', '/admin/users/erin/credit', { amount: `${i}.00`, reason }, token);
    assert.equal(r.status, 200, r.text);
  }
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/ledger?user=erin&limit=3');
  const rows = () => page.locator('[data-testid="ledger-table"] tbody tr');
  await waitFor('the first page', async () => (await rows().count()) === 3);
  assert.equal(await text(page, 'ledger-pager-page'), 'Page 1');
  assert.ok(await page.getByTestId('ledger-pager-newer').isDisabled());
  const firstTexts = await rows().allTextContents();
  assert.match(firstTexts[0], /invoice 7/);
  // Older, older: 3 + 3 + 1; then newer again.
  await page.getByTestId('ledger-pager-older').click();
  await waitText(page, 'ledger-pager-page', 'Page 2');
  await waitFor('the second page', async () => /invoice 4|HYPERLINK/.test((await rows().allTextContents()).join()));
  await page.getByTestId('ledger-pager-older').click();
  await waitText(page, 'ledger-pager-page', 'Page 3');
  await waitFor('the last page', async () => (await rows().count()) === 1 && /invoice 1/.test(await rows().first().textContent()));
  assert.ok(await page.getByTestId('ledger-pager-older').isDisabled(), 'nothing older');
  await page.getByTestId('ledger-pager-newer').click();
  await page.getByTestId('ledger-pager-newer').click();
  await waitText(page, 'ledger-pager-page', 'Page 1');
  await waitFor('the first page again', async () => (await rows().allTextContents()).join() === firstTexts.join());
  // Times: one format, 24-hour, with the zone.
  const times = await page.locator('[data-testid="ledger-table"] tbody time').allTextContents();
  assert.ok(times.length === 3 && times.every((x) => STAMP.test(x.trim())), `times: ${times}`);

  // A date range: today holds all of them, tomorrow none.
  const today = new Date().toISOString().slice(0, 10);
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  await page.getByTestId('ledger-range-from').fill(tomorrow);
  await page.getByTestId('ledger-empty').waitFor();
  await page.getByTestId('ledger-range-from').fill(today);
  await page.getByTestId('ledger-range-to').fill(today);
  // Wait for the summary of this very filter: the rows alone look the same as before.
  await waitText(page, 'ledger-summary', (m) => m.includes(`of erin from ${today} to ${today}`));
  assert.equal(await rows().count(), 3);

  // The CSV holds every transfer the filter selects, not only the page, formulas neutralised.
  const csv = await download(page, 'ledger-export');
  assert.equal(csv.name, `traffix-ledger-erin-${today}_${today}.csv`);
  const lines = csv.text.trim().split('\n');
  assert.equal(lines[0], 'seq,time,kind,debit,credit,amount,amount_micros,reference');
  assert.equal(lines.length, 8, csv.text);
  assert.ok(lines.every((l) => !/(^|,)"?=/.test(l)), 'no cell starts with =');
  assert.ok(csv.text.includes('"\'=HYPERLINK(""http://evil.example"")"'), csv.text);
  assert.match(lines[7], /,7\.00,7000000,"invoice 7"$/);
  await page.getByTestId('ledger-range-from').fill(tomorrow);
  await page.getByTestId('ledger-empty').waitFor();
  const none = await download(page, 'ledger-export');
  assert.equal(none.text.trim().split('\n').length, 1, 'only the header');
  // A user name that names nobody (the API's 404) is an empty state, not an error panel.
  await page.getByTestId('ledger-user').fill('nobody');
  await waitText(page, 'ledger-empty', (m) => m.includes('No user “nobody”'));
  assert.equal(await page.getByTestId('ledger-error').count(), 0);
});

flow('the admin sessions page pages, filters by date and exports CSV', async (open) => {
  await ensureNodeOnline();
  const fay = await t.addUser('fay', { credit: '50' });
  for (let i = 0; i < 3; i++) {
    const c = t.curl('fay', fay.proxyPassword, origin.url(`/bytes/${1000 + i}`));
    assert.equal((await c.exited).code, 0);
  }
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/sessions?user=fay&limit=2');
  const rows = () => page.locator('[data-testid="sessions-table"] tbody tr');
  await waitFor('the first page', async () => (await rows().count()) === 2);
  await page.getByTestId('sessions-auto').uncheck();
  await page.getByTestId('sessions-pager-older').click();
  await waitText(page, 'sessions-pager-page', 'Page 2');
  await waitFor('the second page', async () => (await rows().count()) === 1);
  assert.ok(await page.getByTestId('sessions-pager-older').isDisabled());
  const times = await page.locator('[data-testid="sessions-table"] tbody time').allTextContents();
  assert.ok(times.every((x) => STAMP.test(x.trim())), `times: ${times}`);
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  await page.getByTestId('sessions-range-to').fill(yesterday);
  await page.getByTestId('sessions-empty').waitFor();
  assert.equal(await text(page, 'sessions-pager-page'), 'Page 1', 'a new filter starts at the first page');
  await page.getByTestId('sessions-range-to').fill(today);
  await waitFor('today\'s sessions', async () => (await rows().count()) === 2);
  const csv = await download(page, 'sessions-export');
  const lines = csv.text.trim().split('\n');
  assert.match(lines[0], /^id,start,end,client,sub,owner,vip,node_ip,target,bytes_up,bytes_down,/);
  assert.equal(lines.length, 4, csv.text);
  assert.ok(lines.slice(1).every((l) => l.includes(',"fay",')), csv.text);
  await waitText(page, 'sessions-summary', (m) => m.includes(`of fay open up to ${today}`));
  await page.getByTestId('sessions-user').fill('nobody');
  await waitText(page, 'sessions-empty', (m) => m.includes('No user “nobody”'));
  assert.equal(await page.getByTestId('sessions-error').count(), 0);
});

flow('one time format on every admin page, in the browser\'s zone', async (open) => {
  for (const [zone, re] of [['UTC', STAMP], ['Asia/Tokyo', /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} GMT\+9$/]]) {
    const page = await open({ timezoneId: zone });
    await signIn(page, t, 'admin', t.adminPassword, '#/users');
    for (const route of ['users', 'ledger', 'sessions', 'withdrawals', 'audit']) {
      await page.evaluate((r) => { location.hash = r; }, `#/${route}`);
      await waitFor(`the ${route} page`, async () => (await page.getByTestId('main').getAttribute('data-page')) === route);
      await waitFor(`times on ${route}`, async () => (await page.locator('main table time').count()) > 0);
      const times = (await page.locator('main table time').allTextContents()).map((x) => x.trim());
      const odd = times.filter((x) => !re.test(x));
      assert.deepEqual(odd, [], `${route} in ${zone}`);
    }
  }
});

flow('the overview leaves no lone KPI card, on a desktop or a phone', async (open) => {
  for (const viewport of [{ width: 1280, height: 900 }, { width: 1600, height: 900 }, { width: 1024, height: 768 }, { width: 820, height: 1000 }, { width: 390, height: 844 }]) {
    const page = await open({ viewport });
    await signIn(page, t, 'admin', t.adminPassword, '#/overview');
    await waitText(page, 'kpi-users-value', (v) => /\d/.test(v));
    const tops = await page.locator('[data-testid="overview-kpis"] > *').evaluateAll((els) => els.map((e) => Math.round(e.getBoundingClientRect().top)));
    const perRow = [...tops.reduce((m, y) => m.set(y, (m.get(y) || 0) + 1), new Map()).values()];
    assert.equal(tops.length, 6);
    assert.ok(perRow.every((n) => n === perRow[0]) && perRow[0] > 1, `${viewport.width} px: cards per row ${perRow}`);
  }
});

flow('the nodes map says how to turn GeoIP on when it is off', async (open) => {
  await ensureNodeOnline();
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/nodes');
  await page.getByTestId('nodes-geoip-off').waitFor();
  const note = await text(page, 'nodes-geoip-off');
  assert.match(note, /traffix geoip update/);
  assert.match(note, /traffix-geoip\.timer/);
  assert.match(note, /without a restart/);
  // The note leads to the settings page's GeoIP section: source, no database, the fix.
  assert.equal(await page.getByTestId('nodes-geoip-settings').getAttribute('href'), '#/settings');
  await page.getByTestId('nodes-geoip-settings').click();
  await page.getByTestId('settings-geoip').waitFor();
  assert.match(await text(page, 'settings-geoip-source'), /DB-IP Lite/);
  assert.match(await text(page, 'settings-geoip-missing'), /traffix geoip update/);
  assert.match(await text(page, 'settings-geoip-country'), /none/);
  assert.match(await text(page, 'settings-geoip-next-update'), /\d{4}-\d{2}-\d{2}/);
});

flow('the admin user page shows a user\'s money and lists and runs every action', async (open) => {
  await ensureNodeOnline();
  const hana = await t.addUser('hana', { credit: '20' });
  const hanaToken = (await t.apiLogin('hana', hana.password)).json().access_token;
  assert.equal((await t.api('POST', '/me/sub-users', { name: 'hana_bot', max_streams: 4 }, hanaToken)).status, 200);
  const c = t.curl('hana', hana.proxyPassword, origin.url('/bytes/2000'));
  assert.equal((await c.exited).code, 0);
  await waitFor('hana\'s usage to be posted', async () => (await t.user('hana')).balance_micros < 20_000_000);

  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/users');
  await page.getByTestId('user-open-hana').click();
  await waitFor('the user page', async () => (await page.getByTestId('main').getAttribute('data-page')) === 'user');
  assert.equal(await page.getByTestId('nav-users').getAttribute('aria-current'), 'page');
  const server = await t.user('hana');
  await waitText(page, 'user-page-balance', (s) => /\d/.test(s));
  assert.equal(micros(await text(page, 'user-page-balance')), BigInt(server.balance_micros));
  assert.equal(micros(await text(page, 'user-page-available')), BigInt(server.available_micros));
  assert.equal(await text(page, 'user-page-held'), '$0.00');
  assert.equal(await text(page, 'user-page-pending'), '$0.00');
  await waitFor('hana\'s session', async () => (await page.locator('[data-testid="user-sessions-table"] tbody tr').count()) === 1);
  await waitText(page, 'user-ledger-table', (s) => s.includes('Deposit') && s.includes('+$20.00'));
  assert.equal(await page.getByTestId('user-ledger-all').getAttribute('href'), '#/ledger?user=hana');
  assert.equal(await page.getByTestId('user-sessions-all').getAttribute('href'), '#/sessions?user=hana');
  await page.getByTestId('user-subuser-row-hana_bot').waitFor();
  await page.getByTestId('user-devices-empty').waitFor();

  // Adjust: the signed grammar in the dialog, then the amount and the balance it makes.
  await page.getByTestId('user-page-adjust').click();
  await page.getByTestId('adjust-dialog').waitFor();
  await page.getByTestId('adjust-reason').fill('refund of a failed job');
  for (const bad of ['1,5', '--1', '- 1', '1e3', '-1.0000001', '−1']) {
    await page.getByTestId('adjust-amount').fill(bad);
    await page.getByTestId('adjust-dialog-submit').click();
    await waitText(page, 'adjust-dialog-error', (m) => /like -13\.50/.test(m), `the refusal of ${bad}`);
    assert.equal(await page.getByTestId('adjust-confirm-dialog').count(), 0);
  }
  await page.getByTestId('adjust-amount').fill('-0');
  await page.getByTestId('adjust-dialog-submit').click();
  await waitText(page, 'adjust-dialog-error', (m) => /other than zero/.test(m));
  // More than is available: the API's reason, in the dialog.
  await page.getByTestId('adjust-amount').fill('-1000');
  await page.getByTestId('adjust-dialog-submit').click();
  await page.getByTestId('adjust-confirm-dialog-submit').click();
  await waitText(page, 'adjust-dialog-error', (m) => /available/.test(m), 'the API refusing too much');
  const before = BigInt((await t.user('hana')).balance_micros);
  await page.getByTestId('adjust-amount').fill(' -5.25 ');
  await page.getByTestId('adjust-dialog-submit').click();
  await page.getByTestId('adjust-confirm-dialog').waitFor();
  assert.equal(await text(page, 'adjust-confirm-amount'), '-$5.25');
  assert.equal(micros(await text(page, 'adjust-confirm-before')), before);
  assert.equal(micros(await text(page, 'adjust-confirm-after')), before - 5_250_000n);
  await page.getByTestId('adjust-confirm-dialog-submit').click();
  await page.getByTestId('adjust-dialog').waitFor({ state: 'detached' });
  await page.getByTestId('toast-success').filter({ hasText: 'Adjusted hana by -$5.25' }).waitFor();
  assert.equal(BigInt((await t.user('hana')).balance_micros), before - 5_250_000n);
  await waitText(page, 'user-page-balance', (s) => micros(s) === before - 5_250_000n);
  await waitText(page, 'user-ledger-table', (s) => s.includes('Adjustment') && s.includes('Adjustments (platform)'));
  await page.getByTestId('user-page-adjust').click();
  await page.getByTestId('adjust-amount').fill('+2');
  await page.getByTestId('adjust-reason').fill('goodwill');
  await page.getByTestId('adjust-dialog-submit').click();
  assert.equal(await text(page, 'adjust-confirm-amount'), '+$2.00');
  await page.getByTestId('adjust-confirm-dialog-submit').click();
  await page.getByTestId('adjust-dialog').waitFor({ state: 'detached' });
  assert.equal(BigInt((await t.user('hana')).balance_micros), before - 3_250_000n);

  // Rotate the proxy password: the new one is shown once, and only it works.
  await page.getByTestId('user-page-rotate').click();
  await page.getByTestId('user-rotate-dialog-submit').click();
  const proxyPw = await waitText(page, 'user-proxy-password', (s) => s.length >= 8);
  assert.notEqual(proxyPw, hana.proxyPassword);
  await page.getByTestId('user-proxy-password-dialog-done').click();
  assert.equal((await t.curl('hana', proxyPw, origin.url('/bytes/10')).exited).code, 0, 'the new proxy password works');
  assert.notEqual((await t.curl('hana', hana.proxyPassword, origin.url('/bytes/10')).exited).code, 0, 'the old one does not');

  // Reset the login password: generated, shown once; the old one stops working.
  await page.getByTestId('user-page-reset-password').click();
  await page.getByTestId('reset-password-dialog-submit').click();
  const loginPw = await waitText(page, 'reset-password-value', (s) => s.length >= 8);
  await waitText(page, 'reset-password-revoked', (s) => /\d+ logins? w(as|ere) signed out/.test(s));
  await page.getByTestId('password-reset-dialog-done').click();
  assert.equal((await t.apiLogin('hana', loginPw)).status, 200);
  assert.equal((await t.apiLogin('hana', hana.password)).status, 401);

  // A pairing link with its QR code.
  await page.getByTestId('user-page-pair').click();
  await page.getByTestId('pair-dialog').waitFor();
  assert.match(await text(page, 'pair-link'), /^traffix:\/\/pair\?/);
  assert.match(await page.getByTestId('pair-qr').getAttribute('src'), /^data:image\/svg\+xml;charset=utf-8,.*svg/);
  await page.getByTestId('pair-dialog-done').click();

  // Disable (a reason), then enable.
  await page.getByTestId('user-page-disable').click();
  await page.getByTestId('disable-reason').fill('abuse report 77');
  await page.getByTestId('disable-dialog-submit').click();
  await waitText(page, 'user-page-status', (s) => s.includes('disabled') && s.includes('abuse report 77'));
  assert.equal(await page.getByTestId('user-page-pair').count(), 0, 'no pairing link for a disabled user');
  assert.equal((await t.user('hana')).disabled, true);
  await page.getByTestId('user-page-enable').click();
  await page.getByTestId('enable-dialog-submit').click();
  await page.getByTestId('user-page-disable').waitFor();
  assert.equal((await t.user('hana')).disabled, false);

  // The owner of the nodes has them listed; an unknown name says so.
  await page.evaluate(() => { location.hash = '#/users/carol'; });
  await page.getByTestId(`user-device-row-${nodeA.vip}`).waitFor();
  await waitText(page, `user-device-trust-${nodeA.vip}`, (s) => s.startsWith('none'), 'the device trust on the user page');
  await page.evaluate(() => { location.hash = '#/users/nobody'; });
  await waitText(page, 'user-page-missing', (s) => s.includes('No user “nobody”'));
});

flow('the admin reverses a deposit once; the second time shows the API\'s refusal', async (open) => {
  await t.addUser('ivan');
  const token = (await t.apiLogin('admin', t.adminPassword)).json().access_token;
  const credit = (await t.api('POST', '/admin/users/ivan/credit', { amount: '10', reason: 'wrong user' }, token)).json();
  const seq = credit.transfer;
  assert.equal((await t.api('POST', '/admin/users/ivan/adjust', { amount: '+1.50', reason: 'goodwill' }, token)).status, 200);
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, '#/ledger?user=ivan');
  await waitText(page, 'ledger-table', (s) => s.includes('Adjustment') && s.includes('Adjustments (platform)'));
  await page.getByTestId(`reverse-${seq}`).click();
  await page.getByTestId('reverse-dialog').waitFor();
  await page.getByTestId('reverse-dialog-submit').click();
  await waitText(page, 'reverse-dialog-error', (s) => /reason/i.test(s));
  await page.getByTestId('reverse-reason').fill('credited the wrong user');
  await page.getByTestId('reverse-dialog-submit').click();
  await page.getByTestId('reverse-confirm-dialog').waitFor();
  assert.equal(await text(page, 'reverse-confirm-amount'), '$10.00');
  assert.match(await text(page, 'reverse-confirm-flow'), /ivan → Deposits \(outside\)/);
  await page.getByTestId('reverse-confirm-dialog-submit').click();
  await page.getByTestId('reverse-dialog').waitFor({ state: 'detached' });
  await page.getByTestId('toast-success').filter({ hasText: `Reversed transfer #${seq}. ivan's balance is now $1.50.` }).waitFor();
  assert.equal((await t.user('ivan')).balance_micros, 1_500_000);
  await waitText(page, 'ledger-table', (s) => s.includes('Reversal'));
  const reversal = page.locator('[data-testid="ledger-table"] tbody tr').filter({ hasText: 'Reversal' });
  assert.equal(await reversal.locator('[data-testid^="reverse-"]').count(), 0, 'a reversal cannot be reversed');

  // Again: the API refuses (409), and the dialog says why.
  await page.getByTestId(`reverse-${seq}`).click();
  await page.getByTestId('reverse-reason').fill('twice');
  await page.getByTestId('reverse-dialog-submit').click();
  await page.getByTestId('reverse-confirm-dialog-submit').click();
  const api = await t.api('POST', `/admin/ledger/${seq}/reverse`, { reason: 'twice' }, token);
  assert.equal(api.status, 409);
  await waitText(page, 'reverse-dialog-error', api.json().reason);
  await page.getByTestId('reverse-dialog-cancel').click();
  assert.equal((await t.user('ivan')).balance_micros, 1_500_000, 'nothing changed');
});

flow('a user changes the sign-in password: wrong, mismatched, right, then throttled', async (open) => {
  const jill = await t.addUser('jill');
  const other = await open();
  await signIn(other, t, 'jill', jill.password, '#/me');
  const page = await open();
  await signIn(page, t, 'jill', jill.password, '#/me');
  await page.getByTestId('password-card').waitFor();
  const submit = async () => {
    const [res] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/api/v1/me/password')), page.getByTestId('password-submit').click()]);
    return res.status();
  };
  await page.getByTestId('password-current').fill('not my password');
  await page.getByTestId('password-new').fill('jill-new-password');
  await page.getByTestId('password-repeat').fill('jill-new-password');
  assert.equal(await submit(), 403);
  await waitText(page, 'password-error', 'The current password is wrong. Nothing was changed.');
  // A repeat that differs is refused before anything is sent.
  await page.getByTestId('password-current').fill(jill.password);
  await page.getByTestId('password-repeat').fill('jill-new-passwort');
  await page.getByTestId('password-submit').click();
  await waitText(page, 'password-error', (s) => /do not match/.test(s));
  assert.equal(await page.getByTestId('password-repeat').getAttribute('aria-invalid'), 'true');
  await page.getByTestId('password-repeat').fill('jill-new-password');
  assert.equal(await submit(), 200);
  await waitText(page, 'password-done', (s) => s.includes('Your 1 other session was signed out') && s.includes('this one stays signed in'));
  assert.equal((await t.apiLogin('jill', jill.password)).status, 401);
  assert.equal((await t.apiLogin('jill', 'jill-new-password')).status, 200);
  // This tab stays signed in across a reload; the other one's login has ended.
  await page.reload();
  await waitText(page, 'portal-user', 'jill');
  await other.reload();
  await other.getByTestId('login-page').waitFor();

  // Wrong current passwords are throttled like logins: the wait is shown.
  let status = 0;
  for (let i = 0; i < 8 && status !== 429; i++) {
    await page.getByTestId('password-current').fill('still not it');
    await page.getByTestId('password-new').fill('jill-third-password');
    await page.getByTestId('password-repeat').fill('jill-third-password');
    status = await submit();
  }
  assert.equal(status, 429);
  await waitText(page, 'password-error', (s) => /Too many wrong passwords.*Try again in \d+ s\./.test(s));
});

flow('the admin traces an abuse report by the node\'s IP on the sessions page', async (open) => {
  const node = await ensureNodeOnline();
  const kim = await t.addUser('kim', { credit: '5' });
  assert.equal((await t.curl('kim', kim.proxyPassword, origin.url('/bytes/500')).exited).code, 0);
  const ip = (await t.devices()).find((d) => d.vip === node.vip).public_ip;
  assert.ok(ip, 'the node has a public IP');
  // The session is stored once the stream's end is processed: wait for the API to list it.
  const token = (await t.apiLogin('admin', t.adminPassword)).json().access_token;
  await waitFor('kim\'s session stored', async () => (await t.api('GET', '/admin/sessions?user=kim', undefined, token)).json().length === 1);
  const page = await open();
  await signIn(page, t, 'admin', t.adminPassword, `#/sessions?node_ip=${ip}`);
  await page.getByTestId('sessions-auto').uncheck();
  assert.equal(await page.getByTestId('sessions-node-ip').inputValue(), ip);
  const rows = page.locator('[data-testid="sessions-table"] tbody tr');
  await waitFor('the node\'s sessions', async () => (await rows.count()) > 0);
  const texts = await rows.allTextContents();
  assert.ok(texts.every((r) => r.includes(ip)), `every row was carried by ${ip}`);
  assert.ok(texts.some((r) => r.includes('kim')), 'kim\'s session is among them');
  await waitText(page, 'sessions-summary', (s) => s.includes(`on node ${ip}`));
  const csv = await download(page, 'sessions-export');
  assert.ok(csv.name.includes(ip), csv.name);
  const lines = csv.text.trim().split('\n').slice(1);
  assert.ok(lines.length >= texts.length && lines.every((l) => l.includes(`,"${ip}",`) || l.includes(`,${ip},`)), csv.text);
  // With a client too; another address has none; a partial address is a hint, not an error.
  await page.getByTestId('sessions-user').fill('kim');
  await waitFor('kim\'s sessions on the node', async () => (await rows.count()) === 1 && /kim/.test(await rows.first().textContent()));
  await page.getByTestId('sessions-node-ip').fill('192.0.2.1');
  await waitText(page, 'sessions-empty', (s) => s.includes('No sessions match'));
  await page.getByTestId('sessions-node-ip').fill('192.0.2');
  await waitText(page, 'sessions-empty', (s) => s.includes('“192.0.2” is not an IP address'));
  assert.equal(await page.getByTestId('sessions-error').count(), 0);
});

/* ---------- screenshots ---------- */

flow('the admin enables Crypto Pay (a write-only token); a user tops up in the portal and the paid invoice is credited once', async (open) => {
  // Before: no provider, so the portal says top-ups are made by the operator.
  const portal = await open();
  await signIn(portal, t, 'paula', users.paula.password, '#/me');
  await waitText(portal, 'topup-note', (s) => s.includes('made by the operator'));
  assert.equal(await portal.getByTestId('topup-cryptopay').count(), 0);

  const admin = await open();
  await signIn(admin, t, 'admin', t.adminPassword, '#/payments');
  await admin.getByTestId('payment-settings-form').waitFor();
  assert.equal(await admin.getByTestId('payments-enable-cryptopay').isChecked(), false);
  // Enabling without the token: the API's reason, nothing saved.
  await admin.getByTestId('payments-enable-cryptopay').check();
  await admin.getByTestId('payment-settings-save').click();
  await waitText(admin, 'payment-settings-form-error', (s) => /token/i.test(s));
  await admin.getByTestId('payments-cryptopay-token').fill(CRYPTOPAY_TOKEN);
  await admin.getByTestId('payment-settings-save').click();
  await admin.getByTestId('toast-success').filter({ hasText: /Crypto Pay enabled/ }).waitFor();
  // Write-only: the form is empty again and says it is set; the API never returns it.
  assert.equal(await admin.getByTestId('payments-cryptopay-token').inputValue(), '');
  assert.match(await admin.locator('[data-testid="payments-cryptopay-token"] ~ .hint, .field:has([data-testid="payments-cryptopay-token"]) .hint').first().innerText(), /^Set\./);
  const token = (await (await t.apiLogin('admin', t.adminPassword)).json()).access_token;
  const settings = await t.api('GET', '/admin/payments/settings', undefined, token);
  assert.equal(settings.json().cryptopay_token_set, true);
  assert.ok(!settings.text.includes(CRYPTOPAY_TOKEN), 'the token is never returned');
  assert.ok(!t.log().includes(CRYPTOPAY_TOKEN), 'the token is never logged');

  // The portal shows only the enabled provider, and its form reads amounts exactly.
  await portal.reload();
  await portal.getByTestId('topup-cryptopay').waitFor();
  assert.equal(await portal.getByTestId('topup-note').count(), 0);
  assert.equal(await portal.getByTestId('topup-generic').count(), 0);
  assert.equal(await portal.getByTestId('topup-stars').count(), 0);
  await portal.getByTestId('topup-amount').fill('5,00');
  await portal.getByTestId('topup-cryptopay-submit').click();
  await waitText(portal, 'topup-error', (s) => /like 12\.50/.test(s));
  assert.equal(cryptoPay.created.length, 0, 'nothing was asked of Crypto Pay');
  await portal.getByTestId('topup-amount').fill('5.00');
  await portal.getByTestId('topup-cryptopay-submit').click();
  const link = portal.locator('[data-testid^="topup-pay-link-"]');
  await link.waitFor();
  assert.match(await link.getAttribute('href'), /^https:\/\/t\.me\/CryptoBot\?start=IV/);
  assert.equal(await link.getAttribute('target'), '_blank');
  const id = (await link.getAttribute('data-testid')).replace('topup-pay-link-', '');
  assert.deepEqual([cryptoPay.created[0].currency_type, cryptoPay.created[0].fiat, cryptoPay.created[0].amount], ['fiat', 'USD', '5.00']);
  await waitText(portal, `topup-invoice-status-${id}`, 'active');

  // The payer pays in @CryptoBot; the server's poller sees it and credits it, the portal too.
  const before = (await t.user('paula')).balance_micros;
  cryptoPay.pay(id);
  await waitText(portal, `topup-invoice-status-${id}`, 'credited');
  await portal.getByTestId('toast-success').filter({ hasText: /Payment of \$5\.00 received/ }).waitFor();
  await waitText(portal, 'balance', (s) => micros(s) === BigInt(before) + 5000000n);
  const receipt = portal.locator('[data-testid^="me-deposit-row-"]').filter({ hasText: 'Crypto Pay' });
  await receipt.waitFor();
  assert.match(await receipt.innerText(), new RegExp(`${id}[\\s\\S]*\\$5\\.00[\\s\\S]*credited`));
  // Credited once, and the ledger holds.
  assert.equal((await t.user('paula')).balance_micros, before + 5000000);
  await t.cli(['ledger', 'verify']);

  // The admin sees the receipt and the invoice.
  await admin.goto(`${t.url}#/payments`);
  await admin.locator(`[data-testid="invoice-row-${id}"]`).filter({ hasText: 'credited' }).waitFor();
  await admin.locator('[data-testid^="deposit-row-"]').filter({ hasText: `${id}` }).waitFor();
});

flow('a user links Telegram in the portal and signs in once with the bot\'s login link', async (open) => {
  const tina = await t.addUser('tina');
  const page = await open();
  await signIn(page, t, 'tina', tina.password, '#/me');
  await page.getByTestId('telegram-link').click();
  const command = (await page.getByTestId('telegram-command').textContent()).trim();
  assert.match(command, /^\/start [A-Za-z0-9_-]+$/);
  bot.message(777, command);
  await bot.waitMessage(777, 'linked to tina');
  await waitFor('the portal to show the link', async () => (await page.getByTestId('telegram-status').textContent()).includes('777'));
  assert.equal((await t.user('tina')).telegram_id, 777);

  bot.message(777, '/login');
  const text = await bot.waitMessage(777, '/#/telegram-login/');
  const link = text.split('\n').find((l) => l.startsWith('https://'));
  const fresh = await open();
  await fresh.goto(link);
  await fresh.getByTestId('portal-user').waitFor();
  assert.equal(await fresh.getByTestId('portal-user').textContent(), 'tina');
  assert.ok(!fresh.url().includes('telegram-login'), 'the token leaves the address bar');

  const again = await open();
  await again.goto(link);
  await again.getByTestId('login-message').waitFor();
  assert.match(await again.getByTestId('login-message').textContent(), /used or expired/);
});

flow('screenshots of every main page with real data', async (open) => {
  await ensureNodeOnline();
  // A pending withdrawal next to the approved one, and some finished traffic of every size.
  await t.cli(['user', 'credit', 'carol', '20', '--reason', 'bank transfer 8812']);
  await t.cliJson(['withdrawal', 'request', 'carol', '7.25', '--to', 'PayPal carol@example.com']);
  await t.cli(['user', 'disable', 'mallory', '--reason', 'chargeback 2026-11']); // shows Enable
  for (const n of [250_000, 1_500_000]) {
    const c = t.curl('alice', users.alice.proxyPassword, origin.url(`/bytes/${n}`));
    assert.equal((await c.exited).code, 0, 'the download through the proxy worked');
  }

  const login = await open();
  await login.goto(t.url);
  await login.getByTestId('login-username').waitFor();
  await screenshot(login, 'login');

  // A live download while the admin pages are taken: live sessions, throughput, moving money.
  const curl = t.curl('alice', users.alice.proxyPassword, origin.url('/forever'));
  try {
    const admin = await open();
    await signIn(admin, t, 'admin', t.adminPassword, '#/overview');
    const liveSamples = () => admin.evaluate(() => import('/assets/js/live.js').then((m) => m.latest.history.length));
    await waitFor('a first throughput sample', async () => (await liveSamples()) >= 1);

    const go = async (route) => {
      await admin.evaluate((r) => { location.hash = r; }, `#/${route}`);
      const page = route.startsWith('users/') ? 'user' : route;
      await waitFor(`the ${route} page`, async () => (await admin.getByTestId('main').getAttribute('data-page')) === page);
    };

    await go('nodes');
    await admin.getByTestId(`node-row-${nodeA.vip}`).waitFor();
    await admin.getByTestId('nodes-map-svg').waitFor();
    await screenshot(admin, 'nodes');

    await go('users');
    await admin.getByTestId('user-row-alice').waitFor();
    await admin.getByTestId('user-enable-mallory').waitFor();
    await screenshot(admin, 'users');

    await go('users/alice');
    await admin.getByTestId('user-sessions-table').waitFor();
    await admin.getByTestId('user-ledger-table').waitFor();
    await admin.getByTestId('user-subusers-empty').waitFor();
    await waitText(admin, 'user-page-balance', (s) => /\d/.test(s));
    await screenshot(admin, 'user');

    await go('sessions');
    await waitFor('a live session', async () => /live/.test(await text(admin, 'sessions-table')));
    await screenshot(admin, 'sessions');

    await go('ledger');
    await admin.getByTestId('ledger-table').waitFor();
    await screenshot(admin, 'ledger');

    await go('withdrawals');
    await waitText(admin, 'withdrawals-table', (s) => s.includes('approved') && s.includes('pending'));
    await screenshot(admin, 'withdrawals');

    await go('audit');
    const firstToggle = admin.locator('[data-testid^="audit-toggle-"]').first();
    await firstToggle.waitFor();
    await firstToggle.click();
    await admin.locator('[data-testid^="audit-details-"]').first().waitFor();
    await screenshot(admin, 'audit');

    await go('settings');
    await admin.getByTestId('settings-updated-by').waitFor();
    await screenshot(admin, 'settings');

    // Back to the overview: the throughput chart has a few minutes' worth of points by now…
    // or at least several samples.
    await go('overview');
    await waitFor('several throughput samples', async () => (await liveSamples()) >= 5);
    await waitText(admin, 'kpi-throughput-value', (s) => /\d/.test(s) && !s.startsWith('0 B'));
    await waitText(admin, 'kpi-nodes-online-value', (s) => s.startsWith('1 /'));
    await admin.getByTestId('usage-total-traffic').waitFor();
    await screenshot(admin, 'overview');

    // The client's portal: light, dark and on a phone.
    const shots = [
      ['portal', {}],
      ['portal-dark', { colorScheme: 'dark' }],
      ['portal-phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
    ];
    for (const [name, opts] of shots) {
      const p = await open(opts);
      await signIn(p, t, 'alice', users.alice.password, '#/me');
      await waitText(p, 'balance', (s) => /\d/.test(s));
      await p.getByTestId('me-sessions-table').waitFor();
      await p.getByTestId('me-usage-total-bytes').waitFor();
      await screenshot(p, name, { fullPage: name !== 'portal-phone' });
    }
  } finally {
    await stopProcess(curl);
  }
  for (const name of ['login', 'overview', 'nodes', 'users', 'user', 'sessions', 'ledger', 'withdrawals', 'audit', 'settings', 'portal', 'portal-dark', 'portal-phone']) {
    assert.ok(fs.statSync(path.join(SCREENSHOTS, `${name}.png`)).size > 10_000, `${name}.png written`);
  }
});

flow('a Linux node that pauses itself is shown paused with its reason, not offline, and comes back', async (open) => {
  const settings = path.join(t.tmp, 'paused-node.toml');
  fs.writeFileSync(settings, '# the owner\'s settings\nmax_streams = 8\n');
  const node = await t.startNode('carol', '127.0.0.9', ['--settings', settings]);
  await node.online();
  const admin = await open();
  await signIn(admin, t, 'admin', t.adminPassword, '#/nodes');
  await waitText(admin, `node-status-${node.vip}`, 'online');
  // `traffix node pause`: the node says why, drains and closes its tunnel.
  assert.equal((await run(BIN, ['node', 'pause', '--settings', settings])).code, 0);
  await waitText(admin, `node-status-${node.vip}`, 'paused (paused by its owner)', 'the node shown paused, not offline');
  assert.ok((await t.devices()).some((d) => d.vip === node.vip && !d.online && d.pause_reason === 'by_owner'));
  // The offline filter leaves it out.
  await admin.getByTestId('nodes-filter-offline').click();
  await waitFor('the paused node out of the offline filter', async () => (await admin.getByTestId(`node-row-${node.vip}`).count()) === 0);
  await admin.getByTestId('nodes-filter-all').click();
  // Resumed: online again.
  assert.equal((await run(BIN, ['node', 'resume', '--settings', settings])).code, 0);
  await waitText(admin, `node-status-${node.vip}`, 'online', 'the node back online');
});
