// Admin: health and readiness, the viewers this archive links to, metrics.
// (API tokens, the audit trail, remote AEs and statistics appear here as their APIs land.)
import { clear, h } from './dom.js';
import { config, json } from './api.js';

export async function mount(main) {
  const health = h('dl', { class: 'kv health' });
  clear(main, h('h1', { class: 'sr-only', text: 'Admin' }),
    h('section', { class: 'panel' }, h('h2', { text: 'Health' }), health),
    h('section', { class: 'panel' }, h('h2', { text: 'Viewers' }),
      h('dl', { class: 'kv' },
        h('dt', { text: 'OHIF' }), h('dd', { text: config.ohif_url || 'not configured ([ui] ohif_url)' }),
        h('dt', { text: 'Weasis' }), h('dd', { text: config.weasis ? 'offered' : 'off ([ui] weasis)' }),
        h('dt', { text: 'DICOMweb root' }), h('dd', { text: `${location.origin}${config.dicomweb_root}` }))),
    h('section', { class: 'panel' }, h('h2', { text: 'Metrics' }),
      h('p', {}, h('a', { href: '/metrics', target: '_blank', rel: 'noopener', text: 'Prometheus metrics' }))));
  const rows = [];
  for (const [label, path] of [['Live (/healthz)', '/healthz'], ['Ready (/readyz)', '/readyz']]) {
    let state;
    try { state = (await json(path)).status; } catch (error) { state = `failing: ${error.message}`; }
    rows.push(h('dt', { text: label }), h('dd', { class: state === 'ok' || state === 'ready' ? 'ok' : 'error', text: state }));
  }
  clear(health, rows);
}
