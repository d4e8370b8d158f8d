// The page: a hash router over the sections (studies, viewer, MPR, upload, worklist, admin).
// Each section module exports mount(main, params) and may return a cleanup function.
import { button, clear, h } from './dom.js';
import { json, loadConfig, loadSession, may, onSessionEnded, onUnauthorized, session } from './api.js';

const SECTIONS = {
  studies: () => import('./studies.js'),
  study: () => import('./viewer.js'),
  mpr: () => import('./mpr.js'),
  upload: () => import('./upload.js'),
  worklist: () => import('./worklist.js'),
  admin: () => import('./admin.js'),
  audit: () => import('./audit.js'),
  tokens: () => import('./tokens.js'),
  signin: () => import('./signin.js'),
};

/** The permission each section needs (the page follows the principal's role). */
const NEEDS = {
  studies: 'query', study: 'retrieve', mpr: 'retrieve', upload: 'store', worklist: 'workflow',
  admin: 'admin', audit: 'admin', tokens: 'admin',
};

/** The first section the principal may open (an uploader lands on Upload). */
function home() {
  return ['studies', 'upload', 'worklist', 'admin'].find((s) => may(NEEDS[s])) || 'studies';
}

function showNav() {
  document.querySelectorAll('#nav a').forEach((a) => { a.hidden = needsSignIn() || !may(NEEDS[a.dataset.section]); });
  document.querySelector('.brand').setAttribute('href', `#/${home()}`);
}

let cleanup = null;
let generation = 0;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { section: parts[0] || 'studies', args: parts.slice(1), params: new URLSearchParams(search) };
}

function needsSignIn() {
  return session.auth !== 'none' && !session.signed_in;
}

function toSignIn() {
  if (parseHash().section !== 'signin') sessionStorage.setItem('noctis.return', location.hash || '#/');
  location.hash = '#/signin';
}

function showWho() {
  showNav();
  const who = document.getElementById('who');
  if (session.auth === 'none') { clear(who); return; }
  if (!session.signed_in) { clear(who, h('a', { href: '#/signin', text: 'Sign in' })); return; }
  const role = session.role ? ` (${session.role}${session.facilities?.length ? `: ${session.facilities.join(', ')}` : ''})` : '';
  clear(who, h('span', { class: 'name', text: session.name }), h('span', { class: 'role muted', text: role }), button('Sign out', async () => {
    try { await json('/ui/session', { method: 'DELETE' }); } catch { /* signed out anyway */ }
    session.signed_in = false;
    session.permissions = [];
    sessionStorage.removeItem('noctis.return');
    showWho();
    location.hash = '#/signin';
  }, { class: 'signout' }));
}

async function route() {
  const mine = ++generation;
  const parsed = parseHash();
  const { args, params } = parsed;
  // No section named (or an unknown one): the first the principal may open.
  const section = location.hash.replace(/^#\/?/, '') && SECTIONS[parsed.section] ? parsed.section : home();
  if (section !== 'signin' && needsSignIn()) { toSignIn(); return; }
  const load = SECTIONS[section];
  if (cleanup) { try { cleanup(); } catch { /* section already gone */ } cleanup = null; }
  document.querySelectorAll('#nav a').forEach((a) => {
    a.classList.toggle('active', a.dataset.section === section || (section === 'study' && a.dataset.section === 'studies'));
    if (a.classList.contains('active')) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  const main = document.getElementById('main');
  document.body.dataset.section = section;
  const module = await load();
  if (mine !== generation) return;
  clear(main);
  if (NEEDS[section] && !may(NEEDS[section])) {
    clear(main, h('p', { class: 'error forbidden', role: 'alert', text: `${session.name} (${session.role || 'no role'}) may not open this page: it needs the ${NEEDS[section]} permission.` }));
    return;
  }
  try {
    cleanup = (await module.mount(main, { args, params })) || null;
  } catch (error) {
    clear(main, h('p', { class: 'error', role: 'alert', text: `Could not open this page: ${error.message}` }));
  }
}

// The session ended under a page: sign in again in a dialog over it (the page is not
// left, so nothing on it is lost); every request refused meanwhile waits and is re-sent.
let ended = null;
onSessionEnded(() => {
  if (ended) return ended;
  session.signed_in = false;
  showWho();
  ended = (async () => {
    const { signInForm } = await import('./signin.js');
    await new Promise((resolve) => {
      const opener = document.activeElement;
      const { form, focus } = signInForm(() => {
        layer.remove();
        opener?.focus?.();
        resolve();
      }, { heading: 'Session ended', returnTo: location.hash || '#/', note: 'Your session has ended (the token expired or was revoked). Sign in again to carry on: this page stays as it was (signing in with the provider reloads it).' });
      const layer = h('div', { class: 'modal' }, h('div', { class: 'signin-dialog', role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Sign in again' }, form));
      document.body.append(layer);
      focus();
    });
    ended = null;
  })();
  return ended;
});

onUnauthorized(() => {
  if (parseHash().section === 'signin') return;
  session.signed_in = false;
  showWho();
  toSignIn();
});

document.addEventListener('noctis:session', showWho);
window.addEventListener('hashchange', route);
Promise.all([loadConfig(), loadSession()]).then(() => { showWho(); route(); });
