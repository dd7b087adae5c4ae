// Shared UI pieces: toasts, dialogs, tables, fields, copy buttons, empty and error states.

import { h, icon, newId, replace } from './dom.js';

/* ---------- toasts (aria-live region in index.html) ---------- */

export function toast(message, { type = 'info', timeout = 4500 } = {}) {
  const region = document.getElementById('toasts');
  if (!region) return;
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss notification' }, icon('close'));
  const el = h('div', { class: `toast toast-${type}`, role: type === 'error' ? 'alert' : 'status', testid: `toast-${type}` },
    h('span', { class: 'toast-text' }, message), close);
  const remove = () => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 200);
  };
  close.addEventListener('click', remove);
  region.append(el);
  if (timeout) setTimeout(remove, type === 'error' ? timeout * 2 : timeout);
}

export function errorText(e) {
  if (!e) return 'Something went wrong.';
  return e.reason || e.message || String(e);
}

export function toastError(e, prefix = '') {
  toast((prefix ? `${prefix}: ` : '') + errorText(e), { type: 'error' });
}

/* ---------- form fields ---------- */

/** A labelled input. opts: {label, name, type, testid, hint, required, value, placeholder, autocomplete, ...attrs} */
export function field({ label, hint, testid, control, ...attrs }) {
  const id = newId('f');
  const hintId = hint ? newId('hint') : null;
  const input = control || h(attrs.type === 'textarea' ? 'textarea' : 'input', {
    id,
    testid,
    class: 'input',
    'aria-describedby': hintId,
    ...Object.fromEntries(Object.entries(attrs).filter(([k]) => !(k === 'type' && attrs.type === 'textarea'))),
  });
  if (control) {
    input.id = id;
    if (testid) input.setAttribute('data-testid', testid);
    if (hintId) input.setAttribute('aria-describedby', hintId);
  }
  const wrap = h('div', { class: 'field' },
    h('label', { for: id, class: 'label' }, label, attrs.required ? null : h('span', { class: 'optional' }, ' (optional)')),
    input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
  wrap.input = input;
  return wrap;
}

export function checkbox({ label, testid, checked = false, name }) {
  const id = newId('c');
  const input = h('input', { type: 'checkbox', id, testid, checked, name });
  const wrap = h('div', { class: 'field field-check' }, input, h('label', { for: id }, label));
  wrap.input = input;
  return wrap;
}

export function select({ label, testid, options, value, name, hideLabel = false }) {
  const id = newId('s');
  const sel = h('select', { id, testid, class: 'input', name },
    options.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value) }, text)));
  const wrap = h('div', { class: 'field field-inline' }, h('label', { for: id, class: hideLabel ? 'label sr-only' : 'label' }, label), sel);
  wrap.input = sel;
  return wrap;
}

export function searchBox({ label, testid, placeholder, value = '', onInput, delay = 250 }) {
  const id = newId('q');
  let t = null;
  const input = h('input', { type: 'search', id, testid, class: 'input input-search', placeholder, value, autocomplete: 'off', spellcheck: 'false' });
  input.addEventListener('input', () => {
    clearTimeout(t);
    t = setTimeout(() => onInput(input.value.trim()), delay);
  });
  const wrap = h('div', { class: 'field field-search' }, h('label', { for: id, class: 'sr-only' }, label), input);
  wrap.input = input;
  return wrap;
}

/** A group of toggle buttons (aria-pressed). options: [[value, label, testid]] */
export function segmented({ label, options, value, onChange, testid }) {
  const group = h('div', { class: 'segmented', role: 'group', 'aria-label': label, testid });
  const buttons = options.map(([v, text, tid]) => {
    const b = h('button', { type: 'button', class: 'seg', testid: tid, 'aria-pressed': String(v === value) }, text);
    b.addEventListener('click', () => {
      for (const x of buttons) x.setAttribute('aria-pressed', String(x === b));
      onChange(v);
    });
    return b;
  });
  group.append(...buttons);
  group.set = (v) => buttons.forEach((b, i) => b.setAttribute('aria-pressed', String(options[i][0] === v)));
  return group;
}

/* ---------- buttons ---------- */

export function button(text, { kind = 'secondary', testid, onClick, iconName, type = 'button', label, small = false, disabled = false } = {}) {
  const b = h('button', { type, class: ['btn', `btn-${kind}`, small && 'btn-sm'], testid, 'aria-label': label, disabled },
    iconName ? icon(iconName) : null, text ? h('span', null, text) : null);
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

/** Runs an async action with the button disabled and a busy state. */
export async function busy(btn, fn) {
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain-HTTP dashboards (insecure_http) have no async clipboard: the selection fallback.
  const ta = h('textarea', { class: 'clipboard-helper', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  const ok = document.execCommand('copy');
  ta.remove();
  if (!ok) throw new Error('copy refused');
}

/** A copy button; `text` is a string or a function returning one. */
export function copyButton(text, { testid, label = 'Copy', what = 'Copied', caption = 'Copy' } = {}) {
  const b = h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-copy', testid, 'aria-label': label, title: label }, icon('copy'), h('span', { class: 'copy-text' }, caption));
  b.addEventListener('click', async () => {
    try {
      await writeClipboard(typeof text === 'function' ? text() : text);
      b.classList.add('copied');
      replace(b, icon('check'), h('span', { class: 'copy-text' }, 'Copied'));
      toast(`${what} to the clipboard`, { type: 'success', timeout: 2000 });
      setTimeout(() => {
        b.classList.remove('copied');
        replace(b, icon('copy'), h('span', { class: 'copy-text' }, caption));
      }, 1500);
    } catch {
      toast('Could not copy: select the text and copy it by hand.', { type: 'error' });
    }
  });
  return b;
}

/* ---------- dialogs (native <dialog>: modal, focus trapped, Esc closes) ---------- */

/**
 * A modal form dialog. opts: {title, testid, description, fields: [Node], submitLabel, danger,
 * onSubmit: async (dialogApi) => result | false}. Resolves with onSubmit's result, or null when
 * cancelled. Errors thrown by onSubmit are shown inside the dialog (the API's reason).
 */
export function formDialog({ title, testid, description, fields = [], submitLabel = 'Save', danger = false, onSubmit, cancelLabel = 'Cancel', initialFocus }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = newId('dlg-title');
    const descId = description ? newId('dlg-desc') : null;
    const err = h('p', { class: 'form-error', role: 'alert', testid: `${testid}-error`, hidden: true });
    const submit = button(submitLabel, { kind: danger ? 'danger' : 'primary', type: 'submit', testid: `${testid}-submit` });
    const cancel = button(cancelLabel, { kind: 'secondary', testid: `${testid}-cancel` });
    const form = h('form', { class: 'dialog-body', novalidate: true },
      description ? h('div', { class: 'dialog-desc', id: descId }, description) : null,
      ...fields, err,
      h('div', { class: 'dialog-actions' }, cancel, submit));
    const dlg = h('dialog', { class: 'dialog', testid, 'aria-labelledby': titleId, 'aria-describedby': descId },
      h('div', { class: 'dialog-head' }, h('h2', { id: titleId }, title),
        h('button', { type: 'button', class: 'btn btn-ghost btn-icon', 'aria-label': 'Close', testid: `${testid}-close`, onclick: () => finish(null) }, icon('close'))),
      form);
    let done = false;
    function finish(result) {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve(result);
    }
    cancel.addEventListener('click', () => finish(null));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); finish(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      for (const x of form.querySelectorAll('[aria-invalid="true"]')) x.removeAttribute('aria-invalid');
      submit.disabled = true;
      submit.setAttribute('aria-busy', 'true');
      try {
        const result = await onSubmit({
          form,
          fail(message, input) {
            err.textContent = message;
            err.hidden = false;
            if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); input.addEventListener('input', () => input.removeAttribute('aria-invalid'), { once: true }); }
            return false;
          },
        });
        if (result !== false) finish(result ?? true);
      } catch (ex) {
        err.textContent = errorText(ex);
        err.hidden = false;
      } finally {
        submit.disabled = false;
        submit.removeAttribute('aria-busy');
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = initialFocus || form.querySelector('input:not([type=hidden]), textarea, select') || submit;
    first.focus();
  });
}

/** A yes/no dialog. Resolves true when confirmed (after onConfirm succeeds, if given). */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false, testid = 'confirm-dialog', onConfirm }) {
  return formDialog({
    title,
    testid,
    description: message,
    submitLabel: confirmLabel,
    danger,
    onSubmit: async () => {
      if (onConfirm) await onConfirm();
      return true;
    },
  }).then((r) => r === true);
}

/** An information dialog with arbitrary content and one Close button. */
export function infoDialog({ title, testid, content, closeLabel = 'Done' }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = newId('dlg-title');
    const close = button(closeLabel, { kind: 'primary', testid: `${testid}-done` });
    const dlg = h('dialog', { class: 'dialog', testid, 'aria-labelledby': titleId },
      h('div', { class: 'dialog-head' }, h('h2', { id: titleId }, title),
        h('button', { type: 'button', class: 'btn btn-ghost btn-icon', 'aria-label': 'Close', testid: `${testid}-close`, onclick: () => finish() }, icon('close'))),
      h('div', { class: 'dialog-body' }, content, h('div', { class: 'dialog-actions' }, close)));
    function finish() {
      if (!dlg.open) return;
      dlg.close();
      dlg.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve();
    }
    close.addEventListener('click', finish);
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); finish(); });
    document.body.append(dlg);
    dlg.showModal();
    close.focus();
    dlg.finish = finish;
  });
}

/* ---------- tables ---------- */

/**
 * A responsive table: scrolls sideways on medium screens, becomes cards on phones (each cell is
 * labelled by its column through data-label). columns: [{label, cell(row) → Node|string, class,
 * num, hideLabel}], rowAttrs(row) → attributes (testid…), empty: Node shown when rows is empty.
 */
export function dataTable({ columns, rows, rowAttrs, empty, testid, caption, extraRow, pageSize = 250 }) {
  if (!rows.length && empty) return empty;
  const renderRow = (r) => {
    const tr = h('tr', rowAttrs ? rowAttrs(r) : null,
      columns.map((c) => {
        const v = c.cell(r);
        return h('td', { class: [c.num && 'num', c.class], 'data-label': c.hideLabel ? null : c.label }, h('div', { class: 'cell' }, v == null || v === '' ? '—' : v));
      }));
    const extra = extraRow ? extraRow(r, columns.length) : null;
    return extra ? [tr, extra] : tr;
  };
  let shown = Math.min(rows.length, pageSize);
  const tbody = h('tbody', null, rows.slice(0, shown).map(renderRow));
  const table = h('table', { class: 'table', testid },
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: [c.num && 'num', c.class] }, c.hideLabel ? h('span', { class: 'sr-only' }, c.label) : c.label)))),
    tbody);
  const wrap = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'Table' }, table);
  if (rows.length <= shown) return wrap;
  // Long lists render in pages so that thousands of rows do not stall the page.
  const status = h('span', { class: 'muted small', 'aria-live': 'polite', testid: testid ? `${testid}-count` : null });
  const more = button('', { kind: 'secondary', small: true, testid: testid ? `${testid}-more` : null });
  const sync = () => {
    status.textContent = `Showing ${shown} of ${rows.length}.`;
    more.lastChild.textContent = `Show ${Math.min(pageSize, rows.length - shown)} more`;
    more.hidden = shown >= rows.length;
  };
  more.append(h('span'));
  more.addEventListener('click', () => {
    const next = Math.min(rows.length, shown + pageSize);
    tbody.append(...rows.slice(shown, next).flatMap((r) => [renderRow(r)].flat()));
    shown = next;
    sync();
  });
  sync();
  return h('div', null, wrap, h('div', { class: 'table-more' }, status, more));
}

/* ---------- states ---------- */

export function emptyState({ title, text, action, testid, iconName = 'overview' }) {
  return h('div', { class: 'empty', testid },
    h('div', { class: 'empty-icon' }, icon(iconName)),
    h('p', { class: 'empty-title' }, title),
    text ? h('p', { class: 'empty-text' }, text) : null,
    action || null);
}

export function errorState(e, retry, testid = 'load-error') {
  return h('div', { class: 'error-state', role: 'alert', testid },
    icon('alert'),
    h('div', null, h('p', { class: 'error-title' }, 'Could not load this'), h('p', { class: 'error-reason' }, errorText(e))),
    retry ? button('Retry', { kind: 'secondary', small: true, onClick: retry, testid: `${testid}-retry`, iconName: 'refresh' }) : null);
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', null, text));
}

/**
 * Loads into a container: shows a spinner the first time, an error with Retry on failure; later
 * reloads keep the old content until the new one is ready. Returns reload().
 */
export function loader(container, fetcher, render, { testid = 'load-error', quiet = false } = {}) {
  let first = true;
  let seq = 0;
  async function reload() {
    const my = ++seq;
    if (first) replace(container, loading());
    try {
      const data = await fetcher();
      if (my !== seq || !container.isConnected && !first) return;
      first = false;
      render(data);
    } catch (e) {
      if (my !== seq) return;
      if (e && e.status === 401) return; // going back to login
      if (first || !quiet) replace(container, errorState(e, reload, testid));
    }
  }
  reload();
  return reload;
}

/* ---------- small pieces ---------- */

export function badge(text, kind = 'muted', testid) {
  return h('span', { class: `badge badge-${kind}`, testid }, text);
}

export function pageHeader(title, { subtitle, actions = [], testid } = {}) {
  return h('header', { class: 'page-head', testid },
    h('div', null, h('h1', { class: 'page-title', tabindex: '-1' }, title), subtitle ? h('p', { class: 'page-sub' }, subtitle) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

export function card(title, { testid, actions = [], cls, headingLevel = 'h2', id } = {}, ...body) {
  return h('section', { class: ['card', cls], testid, 'aria-labelledby': id },
    title ? h('div', { class: 'card-head' }, h(headingLevel, { class: 'card-title', id }, title), actions.length ? h('div', { class: 'card-actions' }, actions) : null) : null,
    ...body);
}

/** A stat tile: label, big value, optional sub-line. Returns the element with .set(value, sub). */
export function kpi({ label, testid, value = '—', sub = '', href }) {
  const v = h('p', { class: 'kpi-value', testid: `${testid}-value` }, value);
  const sb = h('p', { class: 'kpi-sub', testid: `${testid}-sub` }, sub);
  const el = h(href ? 'a' : 'div', { class: ['kpi', href && 'kpi-link'], testid, href }, h('p', { class: 'kpi-label' }, label), v, sb);
  el.set = (value, sub, exact) => {
    if (v.textContent !== String(value)) v.textContent = value;
    if (exact) v.title = exact; else v.removeAttribute('title');
    if (sub !== undefined && sb.textContent !== String(sub)) sb.textContent = sub;
  };
  return el;
}

/** A label/value list. items: [[label, value(Node|string), testid]] */
export function defList(items, cls = 'deflist') {
  return h('dl', { class: cls }, items.filter(Boolean).map(([k, v, testid]) => h('div', { class: 'deflist-row' }, h('dt', null, k), h('dd', { testid }, v ?? '—'))));
}

/** Time element with the exact UTC instant on hover. */
export function timeEl(t, text) {
  if (!t) return '—';
  return h('time', { datetime: t, title: t }, text);
}
