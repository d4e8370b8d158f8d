// Study browser: QIDO-RS search with paging (limit/offset, X-Total-Count), sorting (orderby),
// quick date ranges, series thumbnails, and live updates from the workflow event stream.
import { button, clear, debounce, field, h, toast } from './dom.js';
import {
  events, formatDate, formatTime, may, ohifUrl, ROOT, qido, text, thumbnailUrl, toDA, weasisUrl, config,
} from './api.js';

const MODALITIES = ['', 'CT', 'MR', 'CR', 'DX', 'US', 'NM', 'PT', 'XA', 'RF', 'MG', 'OT', 'SR', 'SC'];
const COLUMNS = [
  { key: 'PatientName', label: 'Patient' },
  { key: 'PatientID', label: 'Patient ID' },
  { key: 'StudyDate', label: 'Date' },
  { key: 'AccessionNumber', label: 'Accession' },
  { key: 'ModalitiesInStudy', label: 'Modalities', sortable: false },
  { key: 'StudyDescription', label: 'Description' },
  { key: 'NumberOfStudyRelatedInstances', label: 'Images', sortable: false },
];
const STORE = 'noctis.studies';

function loadState() {
  try {
    return { name: '', pid: '', accession: '', from: '', to: '', modality: '', description: '', fuzzy: false,
      order: '-StudyDate', limit: 25, offset: 0, ...JSON.parse(sessionStorage.getItem(STORE) || '{}') };
  } catch {
    return { order: '-StudyDate', limit: 25, offset: 0 };
  }
}

function wildcard(value, { contains = false } = {}) {
  if (!value) return '';
  if (/[*?]/.test(value)) return value;
  return contains ? `*${value}*` : `${value}*`;
}

export function mount(main) {
  const state = loadState();
  const save = () => sessionStorage.setItem(STORE, JSON.stringify(state));
  let known = new Set();
  let controller = null;

  const inputs = {
    name: h('input', { type: 'search', name: 'PatientName', placeholder: 'Doe^J*', autocomplete: 'off' }),
    pid: h('input', { type: 'search', name: 'PatientID', autocomplete: 'off' }),
    accession: h('input', { type: 'search', name: 'AccessionNumber', autocomplete: 'off' }),
    from: h('input', { type: 'date', name: 'from' }),
    to: h('input', { type: 'date', name: 'to' }),
    modality: h('select', { name: 'ModalitiesInStudy' }, MODALITIES.map((m) => h('option', { value: m, text: m || 'Any' }))),
    description: h('input', { type: 'search', name: 'StudyDescription', autocomplete: 'off' }),
    fuzzy: h('input', { type: 'checkbox', name: 'fuzzy' }),
  };
  for (const [key, input] of Object.entries(inputs)) {
    if (input.type === 'checkbox') input.checked = Boolean(state[key]);
    else input.value = state[key] || '';
  }

  const setRange = (days) => {
    if (days === null) { inputs.from.value = ''; inputs.to.value = ''; }
    else {
      const today = new Date();
      const start = new Date(today);
      start.setDate(today.getDate() - days);
      const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      inputs.from.value = iso(start);
      inputs.to.value = iso(today);
    }
    search();
  };

  const form = h('form', { class: 'search', role: 'search', onsubmit: (e) => { e.preventDefault(); search(); } },
    field('Patient name', inputs.name),
    field('Patient ID', inputs.pid),
    field('Accession', inputs.accession),
    field('From', inputs.from),
    field('To', inputs.to),
    h('div', { class: 'quick', role: 'group', 'aria-label': 'Quick date ranges' },
      button('Today', () => setRange(0), { 'data-range': 'today' }),
      button('7 days', () => setRange(6), { 'data-range': '7d' }),
      button('30 days', () => setRange(29), { 'data-range': '30d' }),
      button('Any date', () => setRange(null), { 'data-range': 'any' })),
    field('Modality', inputs.modality),
    field('Description', inputs.description),
    h('label', { class: 'check' }, inputs.fuzzy, ' fuzzy names'),
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
    button('Clear', () => { for (const i of Object.values(inputs)) { if (i.type === 'checkbox') i.checked = false; else i.value = ''; } search(); }));

  const head = h('tr', {}, h('th', { class: 'narrow' }, h('span', { class: 'sr-only', text: 'Series' })),
    COLUMNS.map((col) => {
      const th = h('th', { scope: 'col', dataset: { key: col.key } });
      if (col.sortable === false) th.textContent = col.label;
      else th.append(button(col.label, () => sortBy(col.key), { class: 'sort' }));
      return th;
    }));
  const body = h('tbody');
  const status = h('span', { class: 'count', 'aria-live': 'polite' });
  const live = h('span', { class: 'live', title: 'New studies appear as they arrive' }, 'live');
  const prev = button('‹ Previous', () => page(-1), { class: 'prev' });
  const next = button('Next ›', () => page(1), { class: 'next' });
  const size = h('select', { 'aria-label': 'Studies per page', onchange: () => { state.limit = Number(size.value); state.offset = 0; search(false); } },
    [25, 50, 100, 200].map((n) => h('option', { value: n, text: `${n} / page` })));
  size.value = String(state.limit);

  clear(main,
    h('section', { class: 'studies' },
      h('h1', { class: 'sr-only', text: 'Studies' }),
      form,
      h('div', { class: 'pager' }, status, live, h('span', { class: 'spacer' }), size, prev, next),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'study-table' }, h('thead', {}, head), body))));

  function params() {
    const fromDA = inputs.from.value.replaceAll('-', '');
    const toDA_ = inputs.to.value.replaceAll('-', '');
    const date = fromDA || toDA_ ? `${fromDA}-${toDA_}` : '';
    return {
      PatientName: wildcard(inputs.name.value.trim()),
      PatientID: wildcard(inputs.pid.value.trim()),
      AccessionNumber: wildcard(inputs.accession.value.trim()),
      StudyDate: date,
      ModalitiesInStudy: inputs.modality.value,
      StudyDescription: wildcard(inputs.description.value.trim(), { contains: true }),
      fuzzymatching: inputs.fuzzy.checked ? 'true' : '',
      includefield: 'StudyDescription',
      orderby: state.order,
      limit: state.limit,
      offset: state.offset,
    };
  }

  function search(resetOffset = true) {
    for (const [key, input] of Object.entries(inputs)) state[key] = input.type === 'checkbox' ? input.checked : input.value;
    if (resetOffset) state.offset = 0;
    save();
    return load();
  }

  function sortBy(key) {
    state.order = state.order === key ? `-${key}` : key;
    search(false);
  }

  function page(delta) {
    state.offset = Math.max(0, state.offset + delta * state.limit);
    search(false);
  }

  async function load({ highlight = false } = {}) {
    controller?.abort();
    controller = new AbortController();
    const started = performance.now();
    main.dataset.loading = 'true';
    let result;
    try {
      result = await qido('/studies', params(), controller.signal);
    } catch (error) {
      if (error.name === 'AbortError') return;
      status.textContent = `Search failed: ${error.message}`;
      main.dataset.loading = 'false';
      return;
    }
    render(result, highlight);
    main.dataset.loading = 'false';
    performance.measure('noctis:study-list', { start: started, end: performance.now() });
  }

  function render({ items, total }, highlight) {
    const rows = items.map((ds) => studyRow(ds, highlight && !known.has(text(ds, 'StudyInstanceUID'))));
    known = new Set(items.map((ds) => text(ds, 'StudyInstanceUID')));
    clear(body, rows.length ? rows : h('tr', {}, h('td', { colspan: COLUMNS.length + 1, class: 'empty', text: 'No study matches.' })));
    const first = total === 0 ? 0 : state.offset + 1;
    const last = state.offset + items.length;
    status.textContent = `${first.toLocaleString()}–${last.toLocaleString()} of ${total.toLocaleString()} studies`;
    status.dataset.total = String(total);
    prev.disabled = state.offset === 0;
    next.disabled = last >= total;
    head.querySelectorAll('th[data-key]').forEach((th) => {
      const key = th.dataset.key;
      const sort = state.order === key ? 'ascending' : state.order === `-${key}` ? 'descending' : 'none';
      th.setAttribute('aria-sort', sort);
    });
  }

  function studyRow(ds, fresh) {
    const uid = text(ds, 'StudyInstanceUID');
    const open = () => { location.hash = `#/study/${encodeURIComponent(uid)}`; };
    const expander = h('button', { type: 'button', class: 'expand', 'aria-expanded': 'false', 'aria-label': 'Show series' }, '▸');
    const row = h('tr', { class: fresh ? 'study fresh' : 'study', tabindex: 0, dataset: { uid },
      ondblclick: open,
      onkeydown: (e) => { if (e.key === 'Enter') open(); if (e.key === 'ArrowRight' || e.key === ' ') { e.preventDefault(); toggle(); } } },
    h('td', { class: 'narrow' }, expander),
    h('td', {}, h('a', { href: `#/study/${encodeURIComponent(uid)}`, text: text(ds, 'PatientName') || '(no name)' })),
    h('td', { text: text(ds, 'PatientID') }),
    h('td', { text: `${formatDate(text(ds, 'StudyDate'))} ${formatTime(text(ds, 'StudyTime'))}` }),
    h('td', { text: text(ds, 'AccessionNumber') }),
    h('td', { text: text(ds, 'ModalitiesInStudy').replaceAll('\\', ', ') }),
    h('td', { text: text(ds, 'StudyDescription') }),
    h('td', { class: 'num', text: `${text(ds, 'NumberOfStudyRelatedSeries') || 0} / ${text(ds, 'NumberOfStudyRelatedInstances') || 0}` }));
    let detail = null;
    async function toggle() {
      if (detail) { detail.remove(); detail = null; expander.setAttribute('aria-expanded', 'false'); expander.textContent = '▸'; return; }
      expander.setAttribute('aria-expanded', 'true');
      expander.textContent = '▾';
      const cell = h('td', { colspan: COLUMNS.length + 1 }, h('p', { class: 'muted', text: 'Loading series…' }));
      detail = h('tr', { class: 'series-row' }, cell);
      row.after(detail);
      try {
        const { items } = await qido(`/studies/${encodeURIComponent(uid)}/series`, { orderby: 'SeriesNumber' });
        clear(cell, h('div', { class: 'series-strip' }, items.map((series) => seriesCard(uid, series))), studyLinks(uid));
      } catch (error) {
        clear(cell, h('p', { class: 'error', text: `Series: ${error.message}` }));
      }
    }
    expander.addEventListener('click', (e) => { e.stopPropagation(); toggle(); });
    return row;
  }

  load();
  // The event stream needs the workflow permission: a viewer's list is not live.
  live.hidden = !may('workflow');
  const stop = may('workflow') ? events(['study.received', 'study.stable'], debounce(() => {
    if (document.visibilityState !== 'hidden') load({ highlight: true });
  }, 400)) : () => {};
  return () => { stop(); controller?.abort(); };
}

/** Modalities without pixels: no thumbnail is asked for (it could only fail). */
export const NOT_IMAGES = new Set(['SR', 'KO', 'PR', 'DOC', 'RTPLAN', 'RTSTRUCT', 'REG', 'SEG', 'FID']);

export function seriesCard(study, series, onPick) {
  const uid = text(series, 'SeriesInstanceUID');
  const label = `${text(series, 'Modality')} #${text(series, 'SeriesNumber')} ${text(series, 'SeriesDescription')}`.trim();
  const img = NOT_IMAGES.has(text(series, 'Modality'))
    ? h('span', { class: 'no-thumb', text: text(series, 'Modality') })
    : h('img', { src: thumbnailUrl(study, uid), alt: label, loading: 'lazy', width: 96, height: 96 });
  img.addEventListener('error', () => img.classList.add('broken'), { once: true });
  const count = text(series, 'NumberOfSeriesRelatedInstances');
  const attrs = { class: 'series-card', dataset: { series: uid }, title: label };
  const inner = [img, h('span', { class: 'caption', text: label }), h('span', { class: 'badge', text: count })];
  if (onPick) return h('button', { type: 'button', ...attrs, onclick: () => onPick(uid) }, inner);
  return h('a', { ...attrs, href: `#/study/${encodeURIComponent(study)}?series=${encodeURIComponent(uid)}` }, inner);
}

export function studyLinks(study) {
  const links = [h('a', { class: 'button', href: `#/study/${encodeURIComponent(study)}`, text: 'Open viewer' })];
  if (config.ohif_url) links.push(h('a', { class: 'button', href: ohifUrl(study), target: '_blank', rel: 'noopener', text: 'Open in OHIF' }));
  if (config.weasis) links.push(h('a', { class: 'button', href: weasisUrl(study), text: 'Open in Weasis' }));
  // WADO-RS retrieve as application/zip (PS3.18 Sup 211), asked for by the accept parameter.
  if (may('retrieve')) {
    links.push(h('a', { class: 'button download', href: `${ROOT}/studies/${encodeURIComponent(study)}?accept=application/zip`, download: `${study}.zip`, text: 'Download zip' }));
  }
  return h('div', { class: 'links' }, links);
}

export { toDA, toast };
