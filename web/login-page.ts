import { html, type SafeHtml } from './html.js';
import { documentShell } from './layout.js';

export const LOGIN_PATH = '/login';

/**
 * A plain form: labelled fields, the error read out where it appears. login.js posts it to
 * /api/v1/auth/login as JSON (the API takes nothing else) and goes on to the OTA page.
 */
export function renderLoginPage(opts: { signedInAs?: string; next: string }): SafeHtml {
  return documentShell({
    title: 'Sign in - Univa Gateway',
    scripts: ['login.js'],
    body: html`<main id="main" class="login-page">
      <h1>Univa Gateway</h1>
      <p>Sign in to manage OTA &amp; system updates.</p>
      ${
        opts.signedInAs
          ? html`<p class="banner">
              You are signed in as <strong>${opts.signedInAs}</strong>.
              <a href="${opts.next}">Go to the OTA page</a> or sign in as someone else.
            </p>`
          : ''
      }
      <form id="login-form" class="login-form" data-next="${opts.next}" novalidate>
        <div class="field">
          <label for="login-username">Username</label>
          <input
            id="login-username"
            name="username"
            type="text"
            autocomplete="username"
            autocapitalize="none"
            spellcheck="false"
            required
            maxlength="64"
          />
        </div>
        <div class="field">
          <label for="login-password">Password</label>
          <input
            id="login-password"
            name="password"
            type="password"
            autocomplete="current-password"
            required
            maxlength="256"
          />
        </div>
        <p id="login-error" class="error" role="alert"></p>
        <button type="submit" id="login-submit">Sign in</button>
      </form>
      <noscript><p class="banner banner-error">Signing in needs JavaScript.</p></noscript>
    </main>`,
  });
}
