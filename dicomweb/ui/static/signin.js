// Sign-in: an API token (noctis-pacs token create ...) exchanged for an HttpOnly session
// cookie (POST /ui/session). As a page (#/signin: nobody signed in yet), after which the
// page goes where the user was going; and as a dialog over a page whose session ended
// (app.js), after which the page carries on as it was.
import { clear, field, h } from './dom.js';
import { config, sendJson, session } from './api.js';

/** The sign-in form; ``onSignedIn`` runs once the session cookie is set. */
export function signInForm(onSignedIn, { heading = 'Sign in', note = '', returnTo = '#/', problem = '' } = {}) {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const message = h('p', { class: 'error', role: 'alert', text: problem });
  // The provider's sign-in (authorization code flow with PKCE, dicomweb/oidc_login.py):
  // the browser leaves for the provider and comes back to ``returnTo``.
  const provider = config.oidc_login ? h('div', { class: 'oidc' },
    h('a', { class: 'button primary oidc-login', href: `/ui/oidc/login?return=${encodeURIComponent(returnTo)}`, text: `Sign in with ${config.oidc_name || 'single sign-on'}` }),
    h('p', { class: 'muted or', text: 'or with an API token:' })) : '';
  const form = h('form', { class: 'panel signin', onsubmit: async (e) => {
    e.preventDefault();
    message.textContent = '';
    try {
      Object.assign(session, await sendJson('/ui/session', 'POST', { token: token.value.trim() }));
      token.value = '';
      document.dispatchEvent(new CustomEvent('noctis:session'));
      onSignedIn();
    } catch (error) {
      message.textContent = error.status === 401 ? 'This token is not valid (unknown, revoked or expired).' : error.message;
      token.select();
    }
  } },
  h('h1', { text: heading }),
  note ? h('p', { class: 'note', text: note }) : '',
  provider,
  h('p', { class: 'muted', text: 'Paste an API token (an administrator creates one on the Tokens page, or with: noctis-pacs token create --name NAME --role ROLE).' }),
  field('API token', token),
  h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
  message);
  return { form, focus: () => token.focus() };
}

export function mount(main, { params } = {}) {
  // Back from the provider with a failure: its reason, and where the user was going.
  const failed = params?.get('oidc_error') || '';
  const back = params?.get('return');
  if (back && back.startsWith('#/') && !back.startsWith('#/signin')) sessionStorage.setItem('noctis.return', back);
  const returnTo = sessionStorage.getItem('noctis.return') || '#/';
  const { form, focus } = signInForm(() => {
    const back = sessionStorage.getItem('noctis.return') || '#/';
    sessionStorage.removeItem('noctis.return');
    location.hash = back.startsWith('#/signin') ? '#/' : back;
  }, { returnTo, problem: failed ? `Sign-in with ${config.oidc_name || 'the provider'} failed: ${failed}` : '' });
  clear(main, form);
  focus();
}
