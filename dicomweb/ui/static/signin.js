// Sign-in: an API token (noctis-pacs token create ...) exchanged for an HttpOnly session
// cookie (POST /ui/session). As a page (#/signin: nobody signed in yet), after which the
// page goes where the user was going; and as a dialog over a page whose session ended
// (app.js), after which the page carries on as it was.
import { clear, field, h } from './dom.js';
import { sendJson, session } from './api.js';

/** The sign-in form; ``onSignedIn`` runs once the session cookie is set. */
export function signInForm(onSignedIn, { heading = 'Sign in', note = '' } = {}) {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const message = h('p', { class: 'error', role: 'alert' });
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
  h('p', { class: 'muted', text: 'Paste an API token (an administrator creates one on the Tokens page, or with: noctis-pacs token create --name NAME --role ROLE).' }),
  field('API token', token),
  h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
  message);
  return { form, focus: () => token.focus() };
}

export function mount(main) {
  const { form, focus } = signInForm(() => {
    const back = sessionStorage.getItem('noctis.return') || '#/';
    sessionStorage.removeItem('noctis.return');
    location.hash = back.startsWith('#/signin') ? '#/' : back;
  });
  clear(main, form);
  focus();
}
