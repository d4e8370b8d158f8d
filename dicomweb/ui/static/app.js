// The page: a hash router over the sections (studies, viewer, MPR, upload, worklist, admin).
// Each section module exports mount(main, params) and may return a cleanup function.
import { clear, h } from './dom.js';
import { loadConfig, onUnauthorized } from './api.js';

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

let cleanup = null;
let generation = 0;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { section: parts[0] || 'studies', args: parts.slice(1), params: new URLSearchParams(search) };
}

async function route() {
  const mine = ++generation;
  const { section, args, params } = parseHash();
  const load = SECTIONS[section] || SECTIONS.studies;
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
  try {
    cleanup = (await module.mount(main, { args, params })) || null;
  } catch (error) {
    clear(main, h('p', { class: 'error', role: 'alert', text: `Could not open this page: ${error.message}` }));
  }
}

onUnauthorized(() => {
  if (parseHash().section === 'signin') return;
  sessionStorage.setItem('noctis.return', location.hash || '#/studies');
  location.hash = '#/signin';
});

window.addEventListener('hashchange', route);
loadConfig().then(route);
