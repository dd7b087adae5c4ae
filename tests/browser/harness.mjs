// Test harness for the browser tests: starts everything in temporary directories and cleans it
// up again. An origin web server (node:http, in this process), `traffix init` + `traffix serve`
// (the debug binary), `traffix node` processes, curl clients through the proxy, and Debian's
// Chromium driven by playwright-core. Every process it starts is tracked by PID and ended by that
// PID; nothing is killed by name. Waits poll for a condition with a generous upper bound, so
// that no test depends on timing.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.TRAFFIX_BIN || path.join(ROOT, 'target/debug/traffix');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOTS = process.env.TRAFFIX_SCREENSHOTS || path.join(ROOT, 'docs/screenshots');
/** Upper bound of any wait; a healthy run needs a fraction of it. */
export const PATIENCE_MS = 60_000;

/* ---------- waiting ---------- */

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` (sync or async) until it returns a truthy value, which it returns. */
export async function waitFor(what, fn, { timeout = PATIENCE_MS, every = 100 } = {}) {
  const start = Date.now();
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    if (Date.now() - start > timeout) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await pause(every);
  }
}

/** An error that ends a waitFor at once (a process that should be running has exited). */
export function fatal(message) {
  return Object.assign(new Error(message), { fatal: true });
}

/* ---------- processes ---------- */

const children = new Set();

/** Spawns a tracked child process; its output goes to `log` (a file path) or is ignored. */
export function startProcess(cmd, args, { env = {}, log = null, cwd } = {}) {
  const out = log ? fs.openSync(log, 'a') : 'ignore';
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  if (log) fs.closeSync(out);
  children.add(child);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child);
    resolve({ code, signal });
  }));
  child.once('error', () => children.delete(child));
  return child;
}

/** Ends one process we started: SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopProcess(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(child.pid, 'SIGTERM'); } catch { return; }
  let timer;
  const done = await Promise.race([child.exited.then(() => true), new Promise((r) => { timer = setTimeout(() => r(false), graceMs); })]);
  clearTimeout(timer);
  if (!done) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    await child.exited;
  }
}

export async function stopAll() {
  await Promise.all([...children].map((c) => stopProcess(c)));
}

// If the test process is interrupted, the processes it started go with it.
function killAllNow() {
  for (const c of children) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}
process.once('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { killAllNow(); process.exit(130); });
}

/** Runs a command to completion: {code, stdout, stderr}. */
export function run(cmd, args, { env = {}, timeout = PATIENCE_MS } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/* ---------- the origin web server ---------- */

/**
 * A plain HTTP origin on 127.0.0.1: `/bytes/N` sends N bytes, `/forever` streams 16 KiB every
 * 5 ms until the client goes away, anything else says hello.
 */
export async function startOrigin() {
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://origin');
    const m = /^\/bytes\/(\d+)$/.exec(url.pathname);
    if (m) {
      let left = Number(m[1]);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(left) });
      const chunk = Buffer.alloc(64 * 1024, 0x78);
      const write = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', write); return; }
        }
        res.end();
      };
      write();
      return;
    }
    if (url.pathname === '/forever') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const chunk = Buffer.alloc(16 * 1024, 0x78);
      const timer = setInterval(() => { if (!res.writableNeedDrain) res.write(chunk); }, 5);
      const stop = () => clearInterval(timer);
      res.on('close', stop);
      req.on('close', stop);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello from origin\n');
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    addr: `127.0.0.1:${port}`,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/**
 * A fake Crypto Pay API (node:http on 127.0.0.1) speaking its JSON: createInvoice and
 * getInvoices, both checking the Crypto-Pay-API-Token header. `pay(id)` marks an invoice paid,
 * as a payer in @CryptoBot would.
 */
export async function startFakeCryptoPay(token) {
  const invoices = new Map();
  const created = [];
  let next = 1000;
  const answer = (res, code, body) => { res.writeHead(code, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(body)); };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      if (req.headers['crypto-pay-api-token'] !== token) return answer(res, 401, { ok: false, error: { code: 401, name: 'UNAUTHORIZED' } });
      if (url.pathname === '/api/createInvoice' && req.method === 'POST') {
        const q = JSON.parse(data);
        created.push(q);
        const id = next++;
        const hash = `IV${id}test`;
        const inv = {
          invoice_id: id, hash, currency_type: q.currency_type, fiat: q.fiat, amount: q.amount, status: 'active',
          accepted_assets: q.accepted_assets ? q.accepted_assets.split(',') : undefined, description: q.description, payload: q.payload,
          bot_invoice_url: `https://t.me/CryptoBot?start=${hash}`, web_app_invoice_url: `https://app.send.tg/invoices/${hash}`,
          created_at: new Date().toISOString(), allow_comments: false, allow_anonymous: true,
        };
        invoices.set(id, inv);
        return answer(res, 200, { ok: true, result: inv });
      }
      if (url.pathname === '/api/getInvoices' && req.method === 'GET') {
        const ids = (url.searchParams.get('invoice_ids') || '').split(',').map(Number);
        return answer(res, 200, { ok: true, result: { items: ids.filter((i) => invoices.has(i)).map((i) => invoices.get(i)) } });
      }
      return answer(res, 404, { ok: false, error: { code: 404, name: 'METHOD_NOT_FOUND' } });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/api`,
    created,
    invoices,
    pay(id) {
      const inv = invoices.get(Number(id));
      Object.assign(inv, { status: 'paid', paid_asset: 'USDT', paid_amount: inv.amount, paid_at: new Date().toISOString() });
    },
    // A client polling on a keep-alive connection (the server's Telegram poller) never lets it go
    // idle: `close` alone would wait for it until the keep-alive timeout.
    close: () => new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

/**
 * A fake Telegram Bot API (node:http on 127.0.0.1) speaking its JSON: getMe, deleteWebhook,
 * getUpdates (serving the scripted updates from `offset` on) and sendMessage (recorded).
 * `message(from, text)` queues a private message as Telegram would deliver it.
 */
export async function startFakeBotApi(token) {
  const updates = [];
  const calls = [];
  let next = 1;
  const answer = (res, body) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(body)); };
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      const m = /^\/bot([^/]+)\/(\w+)$/.exec(new URL(req.url, 'http://x').pathname);
      if (!m || m[1] !== token) return answer(res, { ok: false, error_code: 401, description: 'Unauthorized' });
      const method = m[2].charAt(0).toLowerCase() + m[2].slice(1);
      let body = {};
      try { body = JSON.parse(data || '{}'); } catch { /* multipart: not used here */ }
      if (method === 'getUpdates') {
        const pending = updates.filter((u) => u.update_id >= (body.offset || 0));
        if (pending.length) return answer(res, { ok: true, result: pending });
        return setTimeout(() => answer(res, { ok: true, result: [] }), 100);
      }
      calls.push({ method, body });
      if (method === 'getMe') {
        return answer(res, { ok: true, result: { id: 1, is_bot: true, first_name: 'Traffix', username: 'traffix_test_bot',
          can_join_groups: false, can_read_all_group_messages: false, supports_inline_queries: false,
          can_connect_to_business: false, has_main_web_app: false } });
      }
      if (method === 'sendMessage') {
        return answer(res, { ok: true, result: { message_id: calls.length, date: 1700000000, text: body.text,
          chat: { id: body.chat_id, type: 'private', first_name: 'U' } } });
      }
      return answer(res, { ok: true, result: true });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    message(from, text) {
      const user = { id: from, is_bot: false, first_name: 'U' };
      updates.push({ update_id: next++, message: { message_id: next, date: 1700000000, text, chat: { id: from, type: 'private', first_name: 'U' }, from: user } });
    },
    /** Waits for a message the bot sent to `chat` containing `needle`; its text. */
    waitMessage(chat, needle) {
      return waitFor(`a bot message to ${chat} containing ${needle}`, () => {
        const c = calls.find((x) => x.method === 'sendMessage' && x.body.chat_id === chat && String(x.body.text).includes(needle));
        return c ? c.body.text : null;
      });
    },
    // A client polling on a keep-alive connection (the server's Telegram poller) never lets it go
    // idle: `close` alone would wait for it until the keep-alive timeout.
    close: () => new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

/* ---------- small HTTP helpers ---------- */

function request(url, { method = 'GET', body, headers = {}, insecure = true } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request(u, { method, headers: { ...headers, ...(body ? { 'Content-Type': 'application/json' } : {}) }, rejectUnauthorized: !insecure, timeout: 10_000 }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, text: data, json: () => JSON.parse(data) }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

/* ---------- the Traffix server ---------- */

function tomlValue(text, key) {
  const m = new RegExp(`^${key}\\s*=\\s*"([^"]*)"`, 'm').exec(text);
  if (!m) throw new Error(`${key} missing in traffix.toml`);
  return m[1];
}

export class Traffix {
  /** `traffix init` in a new temporary directory, then `traffix serve`; resolves when it is up. */
  static async start({ env = {} } = {}) {
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build`);
    const t = new Traffix();
    t.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'traffix-browser-'));
    t.dir = path.join(t.tmp, 'data');
    t.env = env;
    const init = await run(BIN, ['init', '--data-dir', t.dir, '--web-listen', '127.0.0.1:0', '--socks-listen', '127.0.0.1:0',
      '--http-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--json']);
    if (init.code !== 0) throw new Error(`traffix init failed: ${init.stderr}`);
    const j = JSON.parse(init.stdout);
    t.adminPassword = j.admin_password;
    const toml = fs.readFileSync(path.join(t.dir, 'traffix.toml'), 'utf8');
    t.web = tomlValue(toml, 'web_listen');
    t.socks = tomlValue(toml, 'socks_listen');
    t.http = tomlValue(toml, 'http_listen');
    t.metrics = tomlValue(toml, 'metrics_listen');
    t.url = `https://${t.web}/`;
    t.nodes = [];
    t.serve = startProcess(BIN, ['serve', '--data-dir', t.dir, '--allow-private-targets'], { env: { RUST_LOG: 'info', ...env }, log: path.join(t.tmp, 'serve.log') });
    await waitFor('the server to answer /healthz', async () => {
      if (t.serve.exitCode !== null) throw fatal(`traffix serve exited:\n${t.log()}`);
      const r = await request(`http://${t.metrics}/healthz`);
      return r.status === 200;
    });
    await waitFor('the admin socket', () => fs.existsSync(path.join(t.dir, 'admin.sock')));
    return t;
  }

  log() {
    try { return fs.readFileSync(path.join(this.tmp, 'serve.log'), 'utf8'); } catch { return ''; }
  }

  /** `traffix ARGS --data-dir D`; throws with stderr when it fails. */
  async cli(args) {
    const r = await run(BIN, [...args, '--data-dir', this.dir]);
    if (r.code !== 0) throw new Error(`traffix ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  async cliJson(args) {
    return JSON.parse(await this.cli([...args, '--json']));
  }

  /** Adds a user: {name, password (dashboard), proxyPassword}; credits it when `credit` is given. */
  async addUser(name, { credit } = {}) {
    const u = await this.cliJson(['user', 'add', name]);
    if (credit) await this.cli(['user', 'credit', name, credit, '--reason', 'browser test top-up']);
    return { name, password: u.password, proxyPassword: u.proxy_password };
  }

  async user(name) {
    return this.cliJson(['user', 'show', name]);
  }

  async devices() {
    return this.cliJson(['device', 'list']);
  }

  /** POST /api/v1/auth/login straight to the API (for comparing the UI with the API's words). */
  async apiLogin(username, password) {
    return request(`https://${this.web}/api/v1/auth/login`, { method: 'POST', body: { username, password } });
  }

  /** A call straight to the REST API: {status, text, json()}. */
  async api(method, apiPath, body, token) {
    return request(`https://${this.web}/api/v1${apiPath}`, { method, body, headers: token ? { Authorization: `Bearer ${token}` } : {} });
  }

  /**
   * Pairs a node for `owner` and starts `traffix node` bound to `bind` (with `extra` arguments,
   * e.g. `--settings FILE`). Resolves with the node
   * ({child, vip, state}) as soon as it has paired (its state file has the vIP); `online()` waits
   * until the server lists it online.
   */
  async startNode(owner, bind, extra = []) {
    const { link } = await this.cliJson(['pair', owner]);
    const state = path.join(this.tmp, `node-${bind}.json`);
    const child = startProcess(BIN, ['node', '--pair', link, '--state', state, '--bind', bind, '--allow-private-targets', ...extra],
      { env: { RUST_LOG: 'info' }, log: path.join(this.tmp, `node-${bind}.log`) });
    const node = { child, state, bind, owner };
    node.vip = await waitFor(`node ${bind} to pair`, () => {
      if (child.exitCode !== null) throw fatal(`traffix node exited: ${fs.readFileSync(path.join(this.tmp, `node-${bind}.log`), 'utf8')}`);
      try { return JSON.parse(fs.readFileSync(state, 'utf8')).vip; } catch { return null; }
    });
    node.online = () => waitFor(`node ${node.vip} online`, async () => (await this.devices()).some((d) => d.vip === node.vip && d.online));
    this.nodes.push(node);
    return node;
  }

  /** curl through the SOCKS5 proxy as USER:PASS, output discarded; a tracked process. */
  curl(user, pass, url) {
    return startProcess('curl', ['-sS', '--max-time', '300', '--socks5-hostname', `${user}:${pass}@${this.socks}`, url, '-o', '/dev/null'],
      { log: path.join(this.tmp, 'curl.log') });
  }

  async stop({ keep = false } = {}) {
    for (const n of this.nodes) await stopProcess(n.child);
    await stopProcess(this.serve, 15_000);
    if (!keep) fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/* ---------- the browser ---------- */

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * A new browser context (own storage) and page on the dashboard. Page errors and failed
 * same-origin requests other than expected API errors are collected in `page.problems`.
 */
export async function openPage(browser, t, { viewport = { width: 1280, height: 900 }, colorScheme = 'light', permissions = [], ...rest } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport, colorScheme, reducedMotion: 'reduce', locale: 'en-US', timezoneId: 'UTC', ...rest });
  if (permissions.length) await context.grantPermissions(permissions, { origin: `https://${t.web}` });
  context.setDefaultTimeout(PATIENCE_MS);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return page;
}

/** Opens the dashboard at `hash` (signed out) and signs in; resolves when the route is shown. */
export async function signIn(page, t, username, password, hash = '') {
  await page.goto(`${t.url}${hash}`);
  await page.getByTestId('login-username').fill(username);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('main').waitFor();
}

/** Sets a marker on the window; `sameDocument` then tells whether the page was reloaded since. */
export async function markDocument(page) {
  await page.evaluate(() => { window.__traffixTestMark = 'not reloaded'; });
}
export async function sameDocument(page) {
  return page.evaluate(() => window.__traffixTestMark === 'not reloaded');
}

/** "$1,234.567" → 1234567000n micros (the dashboard shows exact amounts). */
export function micros(text) {
  const m = /(-)?\D*?([\d,]+)(?:\.(\d{1,6}))?/.exec(String(text).replace(/\u00a0/g, ' '));
  if (!m) throw new Error(`no amount in ${JSON.stringify(text)}`);
  const v = BigInt(m[2].replace(/,/g, '')) * 1000000n + BigInt((m[3] || '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

export async function screenshot(page, name, { fullPage = true } = {}) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  // No focus ring or hover highlight on whatever was clicked last.
  await page.evaluate(() => { if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur(); });
  const vp = page.viewportSize();
  await page.mouse.move(vp.width - 2, vp.height - 2);
  if (fullPage) {
    // The whole page in one window: a full-page capture of a taller page would leave the sticky,
    // window-high sidebar at the height of the window.
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    if (height > vp.height) await page.setViewportSize({ width: vp.width, height });
  }
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  if (fullPage) await page.setViewportSize(vp);
}
