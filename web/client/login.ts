import { Api } from './api.js';
import { byId, fill, listen } from './dom.js';
import { describeError } from './errors.js';

/** Posts the login form as JSON (what /api/v1/auth/login takes); the cookie it sets opens the page. */
function start(): void {
  const form = byId<HTMLFormElement>('login-form');
  const username = byId<HTMLInputElement>('login-username');
  const password = byId<HTMLInputElement>('login-password');
  const submit = byId<HTMLButtonElement>('login-submit');
  const error = byId('login-error');
  const next = form.dataset.next ?? '/ota-system-updates';
  // Only a path of this site: the page never sends anyone elsewhere after signing in.
  const target = next.startsWith('/') && !next.startsWith('//') ? next : '/ota-system-updates';
  const api = new Api(null);

  listen(form, 'submit', async (ev) => {
    ev.preventDefault();
    fill(error);
    for (const input of [username, password]) input.removeAttribute('aria-invalid');
    const missing = [username, password].find((i) => !i.value);
    if (missing) {
      missing.setAttribute('aria-invalid', 'true');
      fill(error, missing === username ? 'Enter your username.' : 'Enter your password.');
      missing.focus();
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      await api.post('/api/v1/auth/login', { username: username.value.trim(), password: password.value });
      location.assign(target);
    } catch (err) {
      password.value = '';
      password.setAttribute('aria-invalid', 'true');
      fill(error, describeError(err));
      password.focus();
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });
  username.focus();
}

start();
