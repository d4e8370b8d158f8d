// Admin: archive statistics (counts, disk use, free space, ingest rates), remote AEs
// (add, C-ECHO with its reason, remove), send jobs (cancel, retry), health and readiness,
// the viewers this archive links to. Data from the admin API (/api, admin permission).
import { button, clear, confirmed, field, h, toast } from './dom.js';
import { config, json, query, sendJson } from './api.js';

export function bytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

const JOB_STATES = ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];

export async function mount(main) {
  const stats = h('dl', { class: 'kv statistics' });
  const health = h('dl', { class: 'kv health' });
  const remotes = h('tbody');
  const jobs = h('tbody');
  const inputs = {
    name: h('input', { name: 'name', required: true, maxlength: 64, pattern: '[A-Za-z0-9][A-Za-z0-9_.\\-]*' }),
    ae_title: h('input', { name: 'ae_title', required: true, maxlength: 16 }),
    host: h('input', { name: 'host', required: true }),
    port: h('input', { name: 'port', type: 'number', min: 1, max: 65535, value: 104, required: true }),
  };
  const problem = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'form-grid remote-form', onsubmit: async (e) => {
    e.preventDefault();
    problem.textContent = '';
    const body = {
      name: inputs.name.value.trim(), ae_title: inputs.ae_title.value.trim(),
      host: inputs.host.value.trim(), port: Number(inputs.port.value),
    };
    try {
      await sendJson('/api/remotes', 'POST', body);
      toast(`Remote ${body.name} added`, 'ok');
      form.reset();
      loadRemotes();
    } catch (error) { problem.textContent = error.message; }
  } },
  field('Name', inputs.name), field('AE title', inputs.ae_title), field('Host', inputs.host), field('Port', inputs.port),
  h('button', { type: 'submit', class: 'primary', text: 'Add remote' }));

  const jobState = h('select', { name: 'job-state', onchange: () => loadJobs() },
    JOB_STATES.map((s) => h('option', { value: s, text: s || 'any state' })));

  clear(main, h('h1', { class: 'sr-only', text: 'Admin' }),
    h('section', { class: 'panel' },
      h('h2', {}, 'Archive ', button('Refresh', () => Promise.all([loadStats(), loadJobs(), loadHealth()]), { class: 'refresh' })), stats),
    h('section', { class: 'panel' }, h('h2', { text: 'Remote AEs' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'remotes' },
        h('thead', {}, h('tr', {}, ['Name', 'AE title / URL', 'Host', 'Port', 'Source', ''].map((t) => h('th', { text: t })))), remotes)),
      h('h3', { class: 'sub', text: 'Add a DICOM AE' }), form, problem),
    h('section', { class: 'panel' },
      h('h2', {}, 'Jobs ', field('State', jobState)),
      h('div', { class: 'table-wrap' }, h('table', { class: 'jobs' },
        h('thead', {}, h('tr', {}, ['#', 'Kind', 'Destination', 'State', 'Progress', 'Attempts', 'By', 'Updated', 'Error', ''].map((t) => h('th', { text: t })))), jobs))),
    h('section', { class: 'panel' }, h('h2', { text: 'Health' }), health),
    h('section', { class: 'panel' }, h('h2', { text: 'Viewers' }),
      h('dl', { class: 'kv' },
        h('dt', { text: 'OHIF' }), h('dd', { text: config.ohif_url || 'not configured ([ui] ohif_url)' }),
        h('dt', { text: 'Weasis' }), h('dd', { text: config.weasis ? 'offered' : 'off ([ui] weasis)' }),
        h('dt', { text: 'DICOMweb root' }), h('dd', { text: `${location.origin}${config.dicomweb_root}` }),
        h('dt', { text: 'Metrics' }), h('dd', {}, h('a', { href: '/metrics', target: '_blank', rel: 'noopener', text: '/metrics' })),
        h('dt', { text: 'Admin API' }), h('dd', {}, h('a', { href: '/api/openapi.json', target: '_blank', rel: 'noopener', text: '/api/openapi.json' })))));

  async function loadStats() {
    try {
      const s = await json('/api/statistics');
      const rows = [['Patients', s.patients], ['Studies', s.studies], ['Series', s.series], ['Instances', s.instances],
        ['Disk used', bytes(s.bytes)], ['Free space', bytes(s.free_bytes)],
        ['Received (last minute / hour)', `${s.received_last_minute ?? '—'} / ${s.received_last_hour ?? '—'}`]];
      if (s.jobs && typeof s.jobs === 'object') {
        rows.push(['Jobs', Object.entries(s.jobs).map(([k, v]) => `${k} ${v}`).join(', ') || 'none']);
      }
      clear(stats, rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { dataset: { key: k }, text: String(v ?? '—') })]));
    } catch (error) { clear(stats, h('dd', { class: 'error', text: error.message })); }
  }

  async function loadRemotes() {
    let list;
    try { list = await json('/api/remotes'); } catch (error) {
      clear(remotes, h('tr', {}, h('td', { colspan: 6, class: 'error', text: error.message }))); return;
    }
    clear(remotes, list.length ? list.map((r) => {
      const result = h('span', { class: 'echo-result muted', 'aria-live': 'polite' });
      return h('tr', { dataset: { name: r.name } },
        h('td', { text: r.name }), h('td', { text: r.ae_title || r.url || '' }), h('td', { text: r.host || '' }),
        h('td', { text: r.port ?? '' }), h('td', { text: r.source || '' }),
        h('td', {},
          r.kind === 'dimse' ? button('Echo', async () => {
            result.textContent = '…';
            result.className = 'echo-result muted';
            try {
              const echo = await json(`/api/remotes/${encodeURIComponent(r.name)}/echo`, { method: 'POST' });
              result.textContent = echo.ok ? `ok (${Math.round(echo.milliseconds)} ms)` : `failed: ${echo.reason}`;
              result.className = `echo-result ${echo.ok ? 'ok' : 'error'}`;
            } catch (error) { result.textContent = error.message; result.className = 'echo-result error'; }
          }, { class: 'echo', 'aria-label': `C-ECHO ${r.name}` }) : '', ' ',
          r.source === 'config' ? '' : button('Remove', async (event) => {
            if (!confirmed(event.currentTarget, 'Confirm remove')) return;
            try {
              await json(`/api/remotes/${encodeURIComponent(r.name)}`, { method: 'DELETE' });
              toast(`Remote ${r.name} removed`, 'ok');
              loadRemotes();
            } catch (error) { toast(error.message, 'error'); }
          }, { class: 'remove', 'aria-label': `Remove ${r.name}` }), ' ', result));
    }) : h('tr', {}, h('td', { colspan: 6, class: 'empty', text: 'No remote AE.' })));
  }

  async function loadJobs() {
    let list;
    try { list = await json(`/api/jobs${query({ state: jobState.value, limit: 50 })}`); } catch (error) {
      clear(jobs, h('tr', {}, h('td', { colspan: 10, class: 'error', text: error.message }))); return;
    }
    const act = (job, verb) => button(verb === 'cancel' ? 'Cancel' : 'Retry', async () => {
      try { await json(`/api/jobs/${job.id}/${verb}`, { method: 'POST' }); loadJobs(); } catch (error) { toast(error.message, 'error'); }
    }, { class: verb });
    clear(jobs, list.length ? list.map((job) => h('tr', { dataset: { id: job.id, state: job.state } },
      h('td', { class: 'num', text: job.id }), h('td', { text: job.kind }), h('td', { text: job.destination }),
      h('td', {}, h('span', { class: `status-pill ${job.state}`, text: job.state })),
      h('td', {}, h('progress', { max: 1, value: job.progress ?? 0 }), ` ${job.done}/${job.total}${job.failed ? ` (${job.failed} failed)` : ''}`),
      h('td', { class: 'num', text: `${job.attempts}/${job.max_attempts}` }), h('td', { text: job.created_by }),
      h('td', { text: (job.updated_at || '').replace('T', ' ').slice(0, 19) }),
      h('td', { class: 'detail', text: job.error || '' }),
      h('td', {}, ['queued', 'running'].includes(job.state) ? act(job, 'cancel') : '',
        ['failed', 'cancelled'].includes(job.state) ? act(job, 'retry') : '')))
      : h('tr', {}, h('td', { colspan: 10, class: 'empty', text: 'No job.' })));
  }

  async function loadHealth() {
    const rows = [];
    for (const [label, path] of [['Live (/healthz)', '/healthz'], ['Ready (/readyz)', '/readyz']]) {
      let state;
      try { state = (await json(path)).status; } catch (error) { state = `failing: ${error.message}`; }
      rows.push(h('dt', { text: label }), h('dd', { class: state === 'ok' || state === 'ready' ? 'ok' : 'error', dataset: { path }, text: state }));
    }
    clear(health, rows);
  }

  await Promise.all([loadStats(), loadRemotes(), loadJobs(), loadHealth()]);
}
