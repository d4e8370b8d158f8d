// The audit trail (GET /audit, admins): who did what to which study, when, from where,
// with its outcome; filters by time range, study, principal and action; pages by seq.
import { button, clear, field, h } from './dom.js';
import { json, query } from './api.js';

const PAGE = 100;

export function mount(main) {
  const inputs = {
    since: h('input', { type: 'datetime-local', name: 'since' }),
    until: h('input', { type: 'datetime-local', name: 'until' }),
    study: h('input', { type: 'search', name: 'study', placeholder: 'Study Instance UID' }),
    principal: h('input', { type: 'search', name: 'principal' }),
    action: h('input', { type: 'search', name: 'action' }),
  };
  const body = h('tbody');
  const status = h('span', { class: 'count', 'aria-live': 'polite' });
  const more = button('Next ›', () => load(true), { class: 'next' });
  let after = 0;
  const form = h('form', { class: 'search', onsubmit: (e) => { e.preventDefault(); load(false); } },
    field('Since', inputs.since), field('Until', inputs.until), field('Study', inputs.study),
    field('Principal', inputs.principal), field('Action', inputs.action),
    h('button', { type: 'submit', class: 'primary', text: 'Search' }));
  clear(main, h('section', { class: 'audit' }, h('h1', { text: 'Audit trail' }), form,
    h('div', { class: 'pager' }, status, h('span', { class: 'spacer' }), more),
    h('div', { class: 'table-wrap' }, h('table', { class: 'audit-table' },
      h('thead', {}, h('tr', {}, ['#', 'Time (UTC)', 'Principal', 'Client', 'Action', 'Outcome', 'Studies', 'Detail'].map((t) => h('th', { text: t })))),
      body))));

  const iso = (value) => (value ? new Date(value).toISOString() : '');

  async function load(next) {
    if (!next) after = 0;
    const params = {
      since: iso(inputs.since.value), until: iso(inputs.until.value), study: inputs.study.value.trim(),
      principal: inputs.principal.value.trim(), action: inputs.action.value.trim(), after: after || '', limit: PAGE,
    };
    let records;
    const search = query(params);
    try { records = await json(`/audit${search}`); } catch (error) {
      status.textContent = `Audit trail: ${error.message}`;
      return;
    }
    clear(body, records.length ? records.map((r) => h('tr', { dataset: { seq: r.seq } },
      h('td', { class: 'num', text: r.seq }), h('td', { text: (r.time || '').replace('T', ' ').slice(0, 23) }),
      h('td', { text: r.principal }), h('td', { text: r.client }), h('td', { text: r.action }),
      h('td', {}, h('span', { class: `status-pill ${r.outcome}`, text: r.outcome })),
      h('td', { title: (r.study_uids || []).join('\n'), text: String((r.study_uids || []).length || '') }),
      h('td', { class: 'detail', text: r.detail || '' })))
      : h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'No record matches.' })));
    if (records.length) after = records[records.length - 1].seq;
    status.textContent = `${records.length} record${records.length === 1 ? '' : 's'}${next ? ' (next page)' : ''}`;
    status.dataset.count = String(records.length);
    status.dataset.query = search;
    more.disabled = records.length < PAGE;
  }

  load(false);
}
