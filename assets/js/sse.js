// Server-Sent Events over fetch(): EventSource cannot send the Authorization header, so the
// stream is read with a ReadableStream and parsed here (event:/data:/id:/retry: lines, blank line
// dispatches). Reconnects with jittered exponential back-off; renews the token on 401.

import { authorizedFetch } from './api.js';

/** Feeds text chunks, calls onEvent(name, data) per complete event. */
export function createParser(onEvent) {
  let buf = '';
  let event = '';
  let data = [];
  let retry = null;
  function line(l) {
    if (l === '') {
      if (data.length) onEvent(event || 'message', data.join('\n'));
      event = '';
      data = [];
      return;
    }
    if (l.startsWith(':')) return; // comment / keep-alive
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
  }
  return {
    push(chunk) {
      buf += chunk;
      let m;
      const re = /\r\n|\r|\n/g;
      let start = 0;
      while ((m = re.exec(buf)) !== null) {
        // A lone \r at the very end may be half of \r\n: wait for more.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        line(buf.slice(start, m.index));
        start = m.index + m[0].length;
      }
      buf = buf.slice(start);
    },
    get retry() {
      return retry;
    },
  };
}

/**
 * Opens a live stream. handlers: {onEvent(name, data), onStatus(state, info)} where state is
 * 'connecting' | 'live' | 'retrying' | 'closed'. Returns {close()}.
 */
export function openStream(path, { onEvent, onStatus = () => {} }) {
  let closed = false;
  let controller = null;
  let backoff = 1000;
  const MAX = 30000;
  let wake = null;

  const sleep = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => { clearTimeout(t); resolve(); };
  });

  (async () => {
    while (!closed) {
      controller = new AbortController();
      onStatus('connecting');
      let gotData = false;
      try {
        const res = await authorizedFetch('GET', path, undefined, { signal: controller.signal, accept: 'text/event-stream' });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onStatus('live');
        const parser = createParser((name, data) => {
          gotData = true;
          backoff = 1000;
          let value = data;
          try { value = JSON.parse(data); } catch { /* keep text */ }
          onEvent(name, value);
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || closed) break;
          parser.push(value);
        }
        if (parser.retry) backoff = Math.max(backoff, parser.retry);
      } catch (e) {
        if (closed) break;
        if (e && e.status === 401) { closed = true; break; } // the app is going back to login
      }
      if (closed) break;
      const wait = Math.round(backoff * (0.75 + Math.random() * 0.5));
      onStatus('retrying', { inMs: wait });
      await sleep(wait);
      backoff = gotData ? 1000 : Math.min(MAX, backoff * 2);
    }
    onStatus('closed');
  })();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
      if (wake) wake();
    },
  };
}
