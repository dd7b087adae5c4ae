// Sign-in: user name + password → POST /api/v1/auth/login.

import { h } from '../dom.js';
import { errorText, field } from '../ui.js';

export default function loginPage(container, { message, onLogin }) {
  const user = field({ label: 'User name', testid: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = field({ label: 'Password', testid: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'form-error', role: 'alert', testid: 'login-error', hidden: true });
  const note = h('p', { class: 'login-note', role: 'status', testid: 'login-message', hidden: !message }, message || '');
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', testid: 'login-submit' }, h('span', null, 'Sign in'));
  const form = h('form', { class: 'login-form', testid: 'login-form', novalidate: true }, note, user, pass, err, submit);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = true;
    const u = user.input.value.trim();
    const p = pass.input.value;
    if (!u || !p) {
      err.textContent = !u ? 'Enter your user name.' : 'Enter your password.';
      err.hidden = false;
      (!u ? user.input : pass.input).focus();
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    submit.firstChild.textContent = 'Signing in…';
    try {
      await onLogin(u, p);
    } catch (ex) {
      err.textContent = errorText(ex);
      err.hidden = false;
      pass.input.select();
      pass.input.focus();
    } finally {
      if (submit.isConnected) {
        submit.disabled = false;
        submit.removeAttribute('aria-busy');
        submit.firstChild.textContent = 'Sign in';
      }
    }
  });

  container.append(h('div', { class: 'login-card card', testid: 'login-page' },
    h('div', { class: 'login-brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: '40', height: '40' }),
      h('div', null, h('h1', { class: 'login-title' }, 'Traffix'), h('p', { class: 'muted' }, 'Sign in to your account'))),
    form,
    h('p', { class: 'login-help muted' }, 'Accounts are created by the operator of this server. Ask them if you have lost your password.')));
  user.input.focus();
}
