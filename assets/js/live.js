// The admin live feed: one SSE stream (GET /api/v1/admin/events) shared by every page that
// subscribes, closed a little while after the last one leaves. Keeps the latest `overview` and
// `nodes` events and derives the throughput from successive byte counters and their `time_ms`.

import { openStream } from './sse.js';

const HISTORY = 150; // samples (≈ 5 min at one per 2 s)
const listeners = new Set();
let stream = null;
let lingerTimer = null;
let status = { state: 'closed' };
let lastOverview = null;
let lastNodes = null;
let prev = null; // {t (s, server time when it has time_ms), up, down, server}
let throughput = null; // {up, down} bytes/s
const history = []; // {t (s), up, down}

function emit(kind, value) {
  for (const l of listeners) {
    try {
      l(kind, value);
    } catch (e) {
      console.error(e);
    }
  }
}

/**
 * Adds one overview sample: from the stream or from a GET /admin/overview. The rate uses the
 * server's own sample time (`time_ms`), so that delivery delays of the stream do not distort it;
 * the local clock only when the server does not send it. The chart's time axis stays local.
 */
export function addOverview(ov) {
  lastOverview = ov;
  const server = Number.isFinite(ov.time_ms);
  const t = server ? ov.time_ms / 1000 : performance.now() / 1000;
  const up = Number(ov.bytes_up_total) || 0;
  const down = Number(ov.bytes_down_total) || 0;
  if (prev && prev.server !== server) prev = null; // clocks cannot be mixed
  if (prev && t < prev.t) {
    prev = { t, up, down, server }; // the server's clock went back: start again
  } else if (prev && t - prev.t >= 0.5) {
    const dt = t - prev.t;
    const du = up - prev.up;
    const dd = down - prev.down;
    if (du < 0 || dd < 0) {
      throughput = null; // counters restarted with the server
      history.length = 0;
    } else {
      throughput = { up: du / dt, down: dd / dt };
      history.push({ t: Date.now() / 1000, up: throughput.up, down: throughput.down });
      if (history.length > HISTORY) history.shift();
    }
    prev = { t, up, down, server };
  } else if (!prev) {
    prev = { t, up, down, server };
  }
  emit('overview', ov);
}

function onEvent(name, data) {
  if (name === 'overview' && data && typeof data === 'object') addOverview(data);
  else if (name === 'nodes' && Array.isArray(data)) {
    lastNodes = data;
    emit('nodes', data);
  }
}

function onStatus(state, info = {}) {
  status = { state, ...info, at: Date.now() };
  emit('status', status);
}

/** Subscribes fn(kind, value) to 'overview' | 'nodes' | 'status'. Returns the unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  if (lingerTimer) {
    clearTimeout(lingerTimer);
    lingerTimer = null;
  }
  if (!stream) stream = openStream('/admin/events', { onEvent, onStatus });
  fn('status', status);
  return () => {
    listeners.delete(fn);
    if (listeners.size === 0 && stream && !lingerTimer) {
      lingerTimer = setTimeout(() => {
        lingerTimer = null;
        if (listeners.size === 0) stop();
      }, 15000);
    }
  };
}

/** Closes the stream and forgets everything (logout). */
export function stop() {
  if (stream) stream.close();
  stream = null;
  status = { state: 'closed' };
  if (lingerTimer) clearTimeout(lingerTimer);
  lingerTimer = null;
}

export function reset() {
  stop();
  listeners.clear();
  lastOverview = null;
  lastNodes = null;
  prev = null;
  throughput = null;
  history.length = 0;
}

export const latest = {
  get overview() { return lastOverview; },
  get nodes() { return lastNodes; },
  get throughput() { return throughput; },
  get history() { return history; },
  get status() { return status; },
};
