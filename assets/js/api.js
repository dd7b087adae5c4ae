// The REST API client (docs/api.md). The access token lives only in memory; the refresh token in
// sessionStorage so that a reload of this tab stays signed in. A 401 triggers one refresh (shared by
// every request that hit it) and one retry; if that fails the app goes back to the login page.

const BASE = '/api/v1';
const REFRESH_KEY = 'traffix.refresh';

let accessToken = null;
let refreshing = null;
let onAuthLost = () => {};

export class ApiError extends Error {
  constructor(status, code, reason, retryAfter = null) {
    super(reason || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.reason = reason || code || `HTTP ${status}`;
    this.retryAfter = retryAfter;
  }
}

/** Called once by the app: what to do when the session cannot be renewed. */
export function setAuthLostHandler(fn) {
  onAuthLost = fn;
}

function storedRefresh() {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

let renewTimer = null;
function storeTokens(t) {
  accessToken = t.access_token;
  // Renew a little before the access token expires, so that requests rarely meet a 401.
  clearTimeout(renewTimer);
  const ttl = Number(t.expires_in);
  if (ttl > 0) renewTimer = setTimeout(() => { if (accessToken) refreshSession(); }, Math.max(ttl - 60, ttl * 0.8) * 1000);
  try {
    if (t.refresh_token) sessionStorage.setItem(REFRESH_KEY, t.refresh_token);
  } catch { /* private mode: the session ends with the page */ }
}

export function clearTokens() {
  accessToken = null;
  clearTimeout(renewTimer);
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch { /* ignore */ }
}

export function hasSession() {
  return Boolean(accessToken || storedRefresh());
}

async function errorFrom(res) {
  let code = null;
  let reason = null;
  try {
    const body = await res.json();
    code = body.error ?? null;
    reason = body.reason ?? null;
  } catch { /* not JSON: a proxy in front, or the server is down */ }
  const ra = res.headers.get('Retry-After');
  const retryAfter = ra && /^\d+$/.test(ra) ? Number(ra) : null;
  if (!reason) {
    reason = res.status >= 500 ? `The server answered ${res.status}. Try again in a moment.` : `Request failed (HTTP ${res.status}).`;
  }
  if (res.status === 429 && retryAfter != null && !/\d+\s*s/.test(reason)) reason += ` (try again in ${retryAfter} s)`;
  return new ApiError(res.status, code, reason, retryAfter);
}

async function send(method, path, body, { auth = true, signal, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
  try {
    return await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the Traffix server. Check your connection; retrying may help.');
  }
}

/** Renews the access token with the stored refresh token; concurrent callers share one attempt. */
export function refreshSession() {
  if (!refreshing) {
    refreshing = (async () => {
      const rt = storedRefresh();
      if (!rt) return false;
      try {
        const res = await send('POST', '/auth/refresh', { refresh_token: rt }, { auth: false });
        if (!res.ok) {
          if (res.status === 401 || res.status === 403) clearTokens();
          return false;
        }
        storeTokens(await res.json());
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** A fetch with the bearer token, one refresh-and-retry on 401. Returns the Response. */
export async function authorizedFetch(method, path, body, opts = {}) {
  if (!accessToken && storedRefresh()) await refreshSession();
  let res = await send(method, path, body, opts);
  if (res.status === 401) {
    const renewed = await refreshSession();
    if (renewed) res = await send(method, path, body, opts);
    if (!renewed || res.status === 401) {
      clearTokens();
      onAuthLost('Your session has ended. Sign in again.');
      throw await errorFrom(res);
    }
  }
  return res;
}

/** JSON request: resolves to the parsed body (null for 204), rejects with ApiError. */
export async function api(method, path, body, opts) {
  const res = await authorizedFetch(method, path, body, opts);
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 403 && err.code === 'disabled') {
      // The account was disabled while signed in: nothing works any more.
      clearTokens();
      onAuthLost(`${err.reason.charAt(0).toUpperCase()}${err.reason.slice(1)}. Contact the operator.`);
    }
    throw err;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const put = (path, body = {}, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

export async function login(username, password) {
  const res = await send('POST', '/auth/login', { username, password }, { auth: false });
  if (!res.ok) throw await errorFrom(res);
  storeTokens(await res.json());
}

/** Spends a one-time login link of the Telegram bot (the token came in the URL's fragment). */
export async function telegramLogin(token) {
  const res = await send('POST', '/auth/telegram', { token }, { auth: false });
  if (!res.ok) throw await errorFrom(res);
  storeTokens(await res.json());
}

export async function logout() {
  const rt = storedRefresh();
  clearTokens();
  if (rt) {
    try {
      await send('POST', '/auth/logout', { refresh_token: rt }, { auth: false });
    } catch { /* the tokens are forgotten here either way */ }
  }
}

/** Downloads an authorized resource through a Blob URL (so the token never goes in a link). */
export async function download(path, filename) {
  const res = await authorizedFetch('GET', path, undefined, { accept: '*/*' });
  if (!res.ok) throw await errorFrom(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
