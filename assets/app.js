// Traffix dashboard: boot, sign-in, the app shell and the hash router.

import * as api from './js/api.js';
import * as live from './js/live.js';
import { h, icon, replace } from './js/dom.js';
import { rethemeCharts } from './js/chart.js';
import { toast } from './js/ui.js';
import loginPage from './js/pages/login.js';
import overviewPage from './js/pages/overview.js';
import nodesPage from './js/pages/nodes.js';
import usersPage from './js/pages/users.js';
import userPage from './js/pages/user.js';
import sessionsPage from './js/pages/sessions.js';
import ledgerPage from './js/pages/ledger.js';
import withdrawalsPage from './js/pages/withdrawals.js';
import paymentsAdminPage from './js/pages/payments-admin.js';
import auditPage from './js/pages/audit.js';
import settingsPage from './js/pages/settings.js';
import portalPage from './js/pages/portal.js';

const ADMIN_ROUTES = [
  { path: 'overview', title: 'Overview', icon: 'overview', page: overviewPage },
  { path: 'nodes', title: 'Nodes', icon: 'nodes', page: nodesPage },
  { path: 'users', title: 'Users', icon: 'users', page: usersPage },
  { path: 'sessions', title: 'Sessions', icon: 'sessions', page: sessionsPage },
  { path: 'ledger', title: 'Ledger', icon: 'ledger', page: ledgerPage },
  { path: 'withdrawals', title: 'Withdrawals', icon: 'withdrawals', page: withdrawalsPage },
  { path: 'payments', title: 'Payments', icon: 'wallet', page: paymentsAdminPage },
  { path: 'audit', title: 'Audit', icon: 'audit', page: auditPage },
  { path: 'settings', title: 'Settings', icon: 'settings', page: settingsPage },
];
const PORTAL_ROUTE = { path: 'me', title: 'My account', icon: 'me', page: portalPage };
/** One user (#/users/NAME), under Users in the navigation. */
const USER_ROUTE = { path: 'user', title: 'User', nav: 'users', page: userPage };

const root = document.getElementById('app');
const state = { me: null, shell: null, cleanup: null, routeKey: null, loginMessage: '' };

/* ---------- theme ---------- */

const THEME_KEY = 'traffix.theme';
const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
function effectiveTheme() {
  return document.documentElement.dataset.theme || (darkQuery.matches ? 'dark' : 'light');
}
function setTheme(t) {
  // Choosing what the system already prefers means "follow the system" again.
  const system = darkQuery.matches ? 'dark' : 'light';
  try {
    if (t === system) localStorage.removeItem(THEME_KEY);
    else localStorage.setItem(THEME_KEY, t);
  } catch { /* storage disabled */ }
  if (t === system) delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  syncThemeButton();
  rethemeCharts();
}
function syncThemeButton() {
  const b = document.querySelector('[data-testid="theme-toggle"]');
  if (!b) return;
  const t = effectiveTheme();
  const next = t === 'dark' ? 'light' : 'dark';
  b.setAttribute('aria-label', `Switch to ${next} theme`);
  b.title = `Switch to ${next} theme`;
  b.dataset.theme = t;
  replace(b, icon(t === 'dark' ? 'sun' : 'moon'));
}
darkQuery.addEventListener('change', () => { syncThemeButton(); rethemeCharts(); });
function themeButton() {
  const b = h('button', { type: 'button', class: 'btn btn-ghost btn-icon', testid: 'theme-toggle' });
  b.addEventListener('click', () => setTheme(effectiveTheme() === 'dark' ? 'light' : 'dark'));
  queueMicrotask(syncThemeButton);
  return b;
}

/* ---------- routing ---------- */

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  return { path: path || '', params: new URLSearchParams(query) };
}

export function navigate(path, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== '')).toString() : '';
  const target = `#/${path}${q ? `?${q}` : ''}`;
  if (location.hash === target) route();
  else location.hash = target;
}

function routesFor(me) {
  return me && me.admin ? [...ADMIN_ROUTES, PORTAL_ROUTE] : [PORTAL_ROUTE];
}

function homeFor(me) {
  return me && me.admin ? 'overview' : 'me';
}

function teardown() {
  if (state.cleanup) {
    try { state.cleanup(); } catch (e) { console.error(e); }
  }
  state.cleanup = null;
}

async function route({ focus = true } = {}) {
  const { path, params } = parseHash();
  if (!state.me) {
    if (path !== 'login') state.afterLogin = path ? location.hash : null;
    showLogin();
    return;
  }
  const routes = routesFor(state.me);
  const userMatch = /^users\/([^/]+)$/.exec(path);
  let name = null;
  if (userMatch) {
    try { name = decodeURIComponent(userMatch[1]); } catch { name = null; }
  }
  const r = name && state.me.admin ? USER_ROUTE : routes.find((x) => x.path === path);
  if (!r) {
    if ((ADMIN_ROUTES.some((x) => x.path === path) || userMatch) && path) toast('That page is for administrators.', { type: 'error' });
    history.replaceState(null, '', `#/${homeFor(state.me)}`);
    return route({ focus });
  }
  const key = `${path}?${params}`;
  teardown();
  ensureShell();
  const main = state.shell.main;
  replace(main);
  main.dataset.page = r.path;
  for (const a of state.shell.nav.querySelectorAll('a[data-path]')) {
    if (a.dataset.path === (r.nav || r.path)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  closeNav();
  document.title = name ? `${name} · Users · Traffix` : `${r.title} · Traffix`;
  const ctx = {
    get me() { return state.me; },
    params,
    name,
    navigate,
    setMe(me) { state.me = me; updateUserChip(); },
    async refreshMe() {
      const me = await api.get('/me');
      ctx.setMe(me);
      return me;
    },
  };
  try {
    state.cleanup = r.page(main, ctx) || null;
  } catch (e) {
    console.error(e);
    main.append(h('p', { class: 'form-error', role: 'alert' }, `This page failed to render: ${e.message}`));
  }
  if (focus && state.routeKey !== null && state.routeKey !== key) {
    const title = main.querySelector('.page-title');
    if (title) title.focus({ preventScroll: true });
  }
  state.routeKey = key;
  window.scrollTo(0, 0);
}

/* ---------- shell ---------- */

function closeNav() {
  if (!state.shell) return;
  state.shell.root.classList.remove('nav-open');
  state.shell.menu.setAttribute('aria-expanded', 'false');
}

function updateUserChip() {
  if (!state.shell || !state.me) return;
  const { chip } = state.shell;
  const key = `${state.me.name}|${state.me.admin}`;
  if (chip.dataset.key === key) return;
  chip.dataset.key = key;
  replace(chip, h('span', { class: 'user-name', testid: 'current-user' }, state.me.name),
    state.me.admin ? h('span', { class: 'badge badge-accent', testid: 'current-user-admin' }, 'admin') : null);
}

function ensureShell() {
  if (state.shell && state.shell.root.isConnected) return;
  const routes = routesFor(state.me);
  const menu = h('button', { type: 'button', class: 'btn btn-ghost btn-icon menu-toggle', testid: 'nav-toggle', 'aria-label': 'Menu', 'aria-expanded': 'false', 'aria-controls': 'sidebar' }, icon('menu'));
  const link = (r) => h('li', null, h('a', { href: `#/${r.path}`, 'data-path': r.path, testid: `nav-${r.path}` }, icon(r.icon), h('span', null, r.title)));
  const nav = h('nav', { id: 'sidebar', class: 'sidebar', 'aria-label': 'Main', testid: 'nav' },
    h('ul', null, routes.filter((r) => r !== PORTAL_ROUTE).map(link)),
    h('div', { class: 'nav-sep', 'aria-hidden': 'true' }),
    h('ul', null, link(PORTAL_ROUTE)));
  const chip = h('div', { class: 'user-chip' });
  const logoutBtn = h('button', { type: 'button', class: 'btn btn-ghost', testid: 'logout' }, icon('logout'), h('span', { class: 'hide-sm' }, 'Sign out'));
  logoutBtn.addEventListener('click', () => doLogout());
  const skip = h('button', { type: 'button', class: 'skip-link', testid: 'skip-to-content' }, 'Skip to content');
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1', testid: 'main' });
  skip.addEventListener('click', () => main.focus());
  const scrim = h('div', { class: 'scrim', 'aria-hidden': 'true' });
  scrim.addEventListener('click', closeNav);
  const shellRoot = h('div', { class: ['shell', !state.me.admin && 'shell-portal'], testid: 'shell' },
    skip,
    h('header', { class: 'topbar' },
      state.me.admin ? menu : null,
      h('a', { class: 'brand', href: `#/${homeFor(state.me)}`, testid: 'brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: '24', height: '24' }), h('span', null, 'Traffix')),
      h('div', { class: 'topbar-right' }, chip, themeButton(), logoutBtn)),
    state.me.admin ? nav : null,
    scrim,
    main);
  menu.addEventListener('click', () => {
    const open = !shellRoot.classList.contains('nav-open');
    shellRoot.classList.toggle('nav-open', open);
    menu.setAttribute('aria-expanded', String(open));
    if (open) { const first = nav.querySelector('a'); if (first) first.focus(); }
  });
  shellRoot.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && shellRoot.classList.contains('nav-open')) { closeNav(); menu.focus(); }
  });
  replace(root, shellRoot);
  state.shell = { root: shellRoot, main, nav, chip, menu };
  updateUserChip();
}

/* ---------- sign-in / sign-out ---------- */

function showLogin() {
  teardown();
  state.shell = null;
  document.title = 'Sign in · Traffix';
  const themeBtn = themeButton();
  replace(root, h('div', { class: 'login-screen' }, h('div', { class: 'login-theme' }, themeBtn), h('main', { class: 'login-main' })));
  state.cleanup = loginPage(root.querySelector('.login-main'), {
    message: state.loginMessage,
    async onLogin(username, password) {
      await api.login(username, password);
      await afterSignIn();
    },
  });
  state.loginMessage = '';
}

async function afterSignIn() {
  state.me = await api.get('/me');
  const target = state.afterLogin;
  state.afterLogin = null;
  state.routeKey = null;
  if (target && target !== '#/login') {
    if (location.hash === target) route({ focus: false });
    else location.hash = target;
  } else {
    const home = `#/${homeFor(state.me)}`;
    if (location.hash === home) route({ focus: false });
    else location.hash = home;
  }
}

async function doLogout() {
  live.reset();
  teardown();
  await api.logout();
  state.me = null;
  state.shell = null;
  state.routeKey = null;
  state.loginMessage = 'You are signed out.';
  history.replaceState(null, '', '#/login');
  showLogin();
}

api.setAuthLostHandler((message) => {
  if (!state.me) return;
  live.reset();
  teardown();
  state.me = null;
  state.shell = null;
  state.routeKey = null;
  state.loginMessage = message;
  const { path } = parseHash();
  state.afterLogin = path && path !== 'login' ? location.hash : null;
  history.replaceState(null, '', '#/login');
  showLogin();
});

window.addEventListener('hashchange', () => route());

// A one-time login link from the Telegram bot: `#/telegram-login/TOKEN`. The token is in the
// fragment, which link previews never send; it is spent here with a POST, then removed from the
// address bar and history.
async function telegramLink() {
  const m = /^#\/telegram-login\/([A-Za-z0-9_-]{1,64})$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, '', '#/');
  try {
    await api.telegramLogin(m[1]);
  } catch (ex) {
    state.loginMessage = ex && ex.status === 401
      ? 'That Telegram login link is used or expired: send /login to the bot again.'
      : 'Signing in with the Telegram link failed; try again.';
  }
}

async function boot() {
  await telegramLink();
  if (api.hasSession()) {
    const ok = await api.refreshSession();
    if (ok) {
      try {
        state.me = await api.get('/me');
      } catch {
        state.me = null;
      }
    }
  }
  if (!state.me) {
    const { path } = parseHash();
    state.afterLogin = path && path !== 'login' ? location.hash : null;
    if (path !== 'login') history.replaceState(null, '', '#/login');
    showLogin();
    return;
  }
  if (!parseHash().path || parseHash().path === 'login') history.replaceState(null, '', `#/${homeFor(state.me)}`);
  route({ focus: false });
}

boot();
