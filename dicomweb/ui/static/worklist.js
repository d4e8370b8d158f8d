// Worklist and study status: scheduled procedure steps (create, edit, cancel) and the
// study tracking view, both kept current by the workflow event stream (/workflow/events).
import { button, clear, debounce, field, h, toast } from './dom.js';
import { events, formatDate, formatTime, json, query, sendJson } from './api.js';

const MODALITIES = ['CT', 'MR', 'CR', 'DX', 'US', 'NM', 'PT', 'XA', 'RF', 'MG', 'OT'];
const PAGE = 50;

function todayInput() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

export function mount(main) {
  let editing = null;
  let known = null;
  const inputs = {
    patient_name: h('input', { name: 'patient_name', required: true, placeholder: 'Family^Given' }),
    patient_id: h('input', { name: 'patient_id', required: true }),
    accession_number: h('input', { name: 'accession_number' }),
    modality: h('select', { name: 'modality' }, MODALITIES.map((m) => h('option', { value: m, text: m }))),
    start_date: h('input', { name: 'start_date', type: 'date', required: true }),
    start_time: h('input', { name: 'start_time', type: 'time' }),
    station_ae_title: h('input', { name: 'station_ae_title', maxlength: 16 }),
    description: h('input', { name: 'description' }),
  };
  inputs.start_date.value = todayInput();
  const title = h('h2', { text: 'Schedule a procedure' });
  const submit = h('button', { type: 'submit', class: 'primary', text: 'Schedule' });
  const problems = h('ul', { class: 'error problems' });
  const form = h('form', { class: 'panel worklist-form', onsubmit: (e) => { e.preventDefault(); save(); } },
    title,
    h('div', { class: 'form-grid' },
      field('Patient name', inputs.patient_name), field('Patient ID', inputs.patient_id),
      field('Accession', inputs.accession_number), field('Modality', inputs.modality),
      field('Start date', inputs.start_date), field('Start time', inputs.start_time),
      field('Station AE title', inputs.station_ae_title), field('Procedure', inputs.description),
      h('div', { class: 'group' }, submit, button('New', () => edit(null), { class: 'reset' }))),
    problems);
  const filter = h('input', { type: 'search', placeholder: 'Patient name, e.g. Doe*', 'aria-label': 'Filter by patient name' });
  const statusFilter = h('select', { 'aria-label': 'Status' }, ['', 'SCHEDULED', 'IN PROGRESS', 'COMPLETED', 'DISCONTINUED'].map((s) => h('option', { value: s, text: s || 'Any status' })));
  const items = h('tbody');
  const studies = h('tbody');
  clear(main,
    h('h1', { class: 'sr-only', text: 'Worklist' }),
    form,
    h('section', { class: 'panel' },
      h('h2', {}, 'Worklist ', h('span', { class: 'live', text: 'live' })),
      h('div', { class: 'pager' }, filter, statusFilter, button('Search', () => loadItems())),
      h('div', { class: 'table-wrap' }, h('table', { class: 'worklist' },
        h('thead', {}, h('tr', {}, ['Patient', 'Patient ID', 'Accession', 'Modality', 'Start', 'Procedure', 'Status', ''].map((t) => h('th', { text: t })))),
        items))),
    h('section', { class: 'panel' },
      h('h2', { text: 'Study status' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'study-status' },
        h('thead', {}, h('tr', {}, ['Study', 'Accession', 'Phase', 'Images', 'Last image', 'Order'].map((t) => h('th', { text: t })))),
        studies))));
  filter.addEventListener('keydown', (e) => { if (e.key === 'Enter') loadItems(); });
  statusFilter.addEventListener('change', () => loadItems());

  function body() {
    const step = {
      ...(editing?.steps?.[0] || {}),
      modality: inputs.modality.value,
      start_date: inputs.start_date.value.replaceAll('-', ''),
      start_time: inputs.start_time.value.replace(':', ''),
      station_ae_title: inputs.station_ae_title.value ? [inputs.station_ae_title.value.trim()] : [],
      description: inputs.description.value,
    };
    return {
      patient_name: inputs.patient_name.value.trim(),
      patient_id: inputs.patient_id.value.trim(),
      accession_number: inputs.accession_number.value.trim(),
      requested_procedure_description: inputs.description.value,
      steps: [step, ...(editing?.steps?.slice(1) || [])],
    };
  }

  async function save() {
    clear(problems);
    try {
      if (editing) {
        await sendJson(`/workflow/worklist/${encodeURIComponent(editing.id)}`, 'PATCH', body());
        toast('Procedure updated', 'ok');
      } else {
        await sendJson('/workflow/worklist', 'POST', body());
        toast('Procedure scheduled', 'ok');
      }
      edit(null);
      loadItems();
    } catch (error) {
      clear(problems, h('li', { text: error.message }));
    }
  }

  function edit(item) {
    editing = item;
    title.textContent = item ? `Edit procedure ${item.requested_procedure_id || ''}`.trim() : 'Schedule a procedure';
    submit.textContent = item ? 'Save' : 'Schedule';
    const step = item?.steps?.[0] || {};
    inputs.patient_name.value = item?.patient_name || '';
    inputs.patient_id.value = item?.patient_id || '';
    inputs.accession_number.value = item?.accession_number || '';
    inputs.modality.value = step.modality || 'CT';
    inputs.start_date.value = step.start_date ? `${step.start_date.slice(0, 4)}-${step.start_date.slice(4, 6)}-${step.start_date.slice(6, 8)}` : todayInput();
    inputs.start_time.value = step.start_time ? `${step.start_time.slice(0, 2)}:${step.start_time.slice(2, 4)}` : '';
    inputs.station_ae_title.value = (step.station_ae_title || [])[0] || '';
    inputs.description.value = step.description || item?.requested_procedure_description || '';
    clear(problems);
    if (item) inputs.patient_name.focus();
  }

  async function cancel(item, control) {
    if (control.dataset.confirm !== 'yes') {
      control.dataset.confirm = 'yes';
      control.textContent = 'Confirm cancel';
      setTimeout(() => { control.dataset.confirm = ''; control.textContent = 'Cancel'; }, 4000);
      return;
    }
    try {
      await json(`/workflow/worklist/${encodeURIComponent(item.id)}/cancel`, { method: 'POST' });
      toast('Procedure cancelled', 'ok');
      loadItems();
    } catch (error) { toast(error.message, 'error'); }
  }

  async function loadItems() {
    const params = { limit: PAGE, patient_name: filter.value.trim(), status: statusFilter.value };
    let list;
    try { list = await json(`/workflow/worklist${query(params)}`); } catch (error) {
      clear(items, h('tr', {}, h('td', { colspan: 8, class: 'error', text: error.message })));
      return;
    }
    const fresh = known ? list.filter((item) => !known.has(item.id)).map((item) => item.id) : [];
    known = new Set(list.map((item) => item.id));
    clear(items, list.length ? list.map((item) => itemRow(item, fresh.includes(item.id)))
      : h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'Nothing scheduled.' })));
    main.dataset.items = String(list.length);
  }

  function itemRow(item, fresh) {
    const step = item.steps?.[0] || {};
    const final = ['COMPLETED', 'DISCONTINUED'].includes(item.status);
    const cancelButton = button('Cancel', (e) => cancel(item, e.currentTarget), { class: 'cancel', disabled: final });
    return h('tr', { class: fresh ? 'fresh' : '', dataset: { id: item.id } },
      h('td', { text: item.patient_name }), h('td', { text: item.patient_id }), h('td', { text: item.accession_number }),
      h('td', { text: step.modality || '' }), h('td', { text: `${formatDate(step.start_date)} ${formatTime(step.start_time)}` }),
      h('td', { text: step.description || item.requested_procedure_description || '' }),
      h('td', {}, h('span', { class: `status-pill ${item.status}`, text: item.status })),
      h('td', {}, button('Edit', () => edit(item), { class: 'edit', disabled: final }), ' ', cancelButton));
  }

  async function loadStudies() {
    let list;
    try { list = await json(`/workflow/studies${query({ limit: 20 })}`); } catch { return; }
    clear(studies, list.length ? list.map((s) => h('tr', { dataset: { study: s.study_instance_uid } },
      h('td', {}, h('a', { href: `#/study/${encodeURIComponent(s.study_instance_uid)}`, text: `…${s.study_instance_uid.slice(-12)}` })),
      h('td', { text: s.accession_number || '' }),
      h('td', {}, h('span', { class: `status-pill ${s.phase}`, text: s.phase.replace('_', ' ') })),
      h('td', { text: String(s.instances ?? '') }),
      h('td', { text: (s.last_instance_at || '').replace('T', ' ').slice(0, 19) }),
      h('td', { text: s.item_status || '' })))
      : h('tr', {}, h('td', { colspan: 6, class: 'empty', text: 'No study tracked yet.' })));
  }

  loadItems();
  loadStudies();
  const stop = events(['worklist.created', 'worklist.changed', 'mpps.changed', 'study.received', 'study.stable'], debounce(() => {
    loadItems();
    loadStudies();
  }, 300));
  return stop;
}
