// The DICOM attribute browser: one instance's stored metadata (WADO-RS, DICOM JSON) as a
// filterable table of tag, keyword (for common attributes), VR and value.
import { button, h } from './dom.js';
import { TAGS } from './api.js';

const EXTRA = {
  '00080005': 'SpecificCharacterSet', '00080008': 'ImageType', '00080012': 'InstanceCreationDate',
  '00080070': 'Manufacturer', '00081090': 'ManufacturerModelName', '00180015': 'BodyPartExamined',
  '00180060': 'KVP', '00185100': 'PatientPosition', '00200052': 'FrameOfReferenceUID',
  '00280002': 'SamplesPerPixel', '00280100': 'BitsAllocated', '00280101': 'BitsStored',
  '00280102': 'HighBit', '00280103': 'PixelRepresentation', '7FE00010': 'PixelData',
  '00020010': 'TransferSyntaxUID', '00080021': 'SeriesDate', '00080031': 'SeriesTime',
  '00100021': 'IssuerOfPatientID', '00321060': 'RequestedProcedureDescription',
};
const KEYWORDS = Object.fromEntries([...Object.entries(TAGS).map(([k, v]) => [v, k]), ...Object.entries(EXTRA)]);

function describe(element) {
  if (!element) return '';
  if (element.BulkDataURI) return '(bulk data)';
  if (element.InlineBinary) return `(binary, ${Math.round((element.InlineBinary.length * 3) / 4)} bytes)`;
  const value = element.Value ?? [];
  if (element.vr === 'SQ') return `(${value.length} item${value.length === 1 ? '' : 's'})`;
  return value.map((v) => (v && typeof v === 'object' ? (v.Alphabetic ?? JSON.stringify(v)) : String(v))).join('\\');
}

function rows(ds, depth = 0) {
  const out = [];
  for (const tag of Object.keys(ds).sort()) {
    const element = ds[tag];
    const label = `${'  '.repeat(depth)}(${tag.slice(0, 4)},${tag.slice(4)})`;
    out.push(h('tr', { dataset: { tag } }, h('td', { text: label }), h('td', { text: KEYWORDS[tag.toUpperCase()] || '' }),
      h('td', { text: element.vr || '' }), h('td', { text: describe(element).slice(0, 500) })));
    if (element.vr === 'SQ' && depth < 3) (element.Value || []).forEach((item) => out.push(...rows(item, depth + 1)));
  }
  return out;
}

export function showAttributes(ds, title) {
  const filter = h('input', { type: 'search', placeholder: 'Filter by tag, keyword or value', 'aria-label': 'Filter attributes' });
  const body = h('tbody', {}, rows(ds));
  filter.addEventListener('input', () => {
    const needle = filter.value.toLowerCase();
    for (const row of body.rows) row.classList.toggle('hidden', needle !== '' && !row.textContent.toLowerCase().includes(needle));
  });
  const close = () => { dialog.remove(); document.removeEventListener('keydown', onKey, true); previous?.focus(); };
  const onKey = (e) => { if (e.key === 'Escape') { e.stopPropagation(); close(); } };
  const previous = document.activeElement;
  const dialog = h('section', { class: 'dialog attributes', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
    h('header', {}, h('h2', { text: title }), filter, button('Close', close, { class: 'close' })),
    h('div', { class: 'body' }, h('table', {}, h('thead', {}, h('tr', {}, ['Tag', 'Keyword', 'VR', 'Value'].map((t) => h('th', { text: t })))), body)));
  document.body.append(dialog);
  document.addEventListener('keydown', onKey, true);
  filter.focus();
  return dialog;
}
