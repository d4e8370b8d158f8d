// Upload: drop files, folders or zip archives (or pick them), sent by STOW-RS in batches
// of multipart/related application/dicom parts, with a progress bar per batch and overall,
// and a summary of stored / already stored / rejected files with each reason. Zip archives
// are opened in the browser (unzip.js): each member is a file of its own.
import { button, clear, h } from './dom.js';
import { csrfToken, ROOT, signInAgain } from './api.js';
import { listZip, looksLikeZip } from './unzip.js';

const BATCH_FILES = 10;             // the server sends at most 20 Warning headers
const BATCH_BYTES = 16 * 2 ** 20;
const FAILED_SEQUENCE = '00081198';
const FAILURE_REASON = '00081197';
const REASONS = { 0xa700: 'out of resources', 0xa900: 'data set does not match', 0xc000: 'cannot understand', 0x0110: 'processing failure' };

export function mount(main) {
  const fileInput = h('input', { type: 'file', multiple: true, class: 'hidden', 'aria-label': 'Choose files' });
  const folderInput = h('input', { type: 'file', multiple: true, webkitdirectory: true, class: 'hidden', 'aria-label': 'Choose a folder' });
  const zone = h('div', { class: 'dropzone', tabindex: 0, role: 'button', 'aria-label': 'Drop DICOM files, folders or zip archives here, or press Enter to choose files' },
    h('p', { text: 'Drop DICOM files, folders or zip archives here' }),
    h('div', { class: 'pick' },
      button('Choose files…', () => fileInput.click()),
      button('Choose a folder…', () => folderInput.click())),
    fileInput, folderInput);
  const overall = h('progress', { max: 1, value: 0, class: 'overall', 'aria-label': 'Overall progress' });
  const overallText = h('span', { class: 'overall-text muted' });
  const batches = h('div', { class: 'batches' });
  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const problems = h('tbody');
  const problemTable = h('table', { class: 'problems hidden' },
    h('thead', {}, h('tr', {}, h('th', { text: 'File' }), h('th', { text: 'Outcome' }), h('th', { text: 'Reason' }))), problems);
  clear(main, h('section', { class: 'upload' }, h('h1', { text: 'Upload' }), zone,
    h('div', { class: 'panel progress-panel hidden' }, overall, overallText, batches, summary, problemTable)));

  let busy = false;
  zone.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const entries = [...e.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    const files = entries.length ? (await Promise.all(entries.map(walk))).flat() : [...e.dataTransfer.files];
    send(files);
  });
  fileInput.addEventListener('change', () => { send([...fileInput.files]); fileInput.value = ''; });
  folderInput.addEventListener('change', () => { send([...folderInput.files]); folderInput.value = ''; });

  // Hidden files, DICOMDIRs (a medium's index, not an instance) and macOS resource forks.
  const skipped = (name) => /(^|\/)(\.|DICOMDIR$|__MACOSX\/)/.test(name);

  /** Files (zip archives opened) as items {label, size, read() -> Blob}, and the
   *  members that cannot be read, each with its reason. */
  async function expand(files) {
    const items = [];
    const refused = [];
    for (const file of files) {
      const label = file.webkitRelativePath || file.relativePath || file.name;
      if (!looksLikeZip(file)) {
        if (file.size > 0 && !skipped(label)) items.push({ label, size: file.size, read: async () => file });
        continue;
      }
      try {
        const { members, refused: unreadable } = await listZip(file);
        for (const member of members) {
          if (member.size > 0 && !skipped(member.name)) items.push({ label: `${label}/${member.name}`, size: member.size, read: member.read });
        }
        unreadable.forEach((m) => refused.push({ label: `${label}/${m.name}`, reason: m.reason }));
      } catch (error) {
        refused.push({ label, reason: `${error.message}` });
      }
    }
    return { items, refused };
  }

  async function send(files) {
    if (busy || !files.length) return;
    busy = true;
    main.dataset.upload = 'running';
    main.querySelector('.progress-panel').classList.remove('hidden');
    clear(batches);
    clear(problems);
    const { items, refused } = await expand(files);
    const plan = [];
    let current = [];
    let bytes = 0;
    for (const item of items) {
      if (current.length && (current.length >= BATCH_FILES || bytes + item.size > BATCH_BYTES)) { plan.push(current); current = []; bytes = 0; }
      current.push(item);
      bytes += item.size;
    }
    if (current.length) plan.push(current);
    const total = items.reduce((sum, f) => sum + f.size, 0);
    const counts = { stored: 0, already: 0, rejected: refused.length };
    for (const { label, reason } of refused) {
      problems.append(h('tr', { class: 'rejected' }, h('td', { text: label }), h('td', { text: 'rejected' }), h('td', { text: reason })));
    }
    renderSummary(counts);
    let done = 0;
    const rows = plan.map((batch, index) => {
      const bar = h('progress', { max: 1, value: 0, 'aria-label': `Batch ${index + 1}` });
      const state = h('span', { class: 'muted', text: 'waiting' });
      const row = h('div', { class: 'batch', dataset: { batch: index + 1 } }, h('span', { text: `Batch ${index + 1} (${batch.length})` }), bar, state);
      batches.append(row);
      return { bar, state, row };
    });
    const showOverall = (extra) => {
      overall.value = total ? (done + extra) / total : 1;
      overallText.textContent = ` ${Math.round(overall.value * 100)}% of ${formatBytes(total)} in ${items.length} files`;
    };
    for (const [index, batch] of plan.entries()) {
      const { bar, state, row } = rows[index];
      state.textContent = 'sending';
      const size = batch.reduce((sum, f) => sum + f.size, 0);
      // Read (unzip) this batch's members now; one that cannot be read is rejected alone.
      const blobs = await Promise.all(batch.map((item) => item.read().catch((error) => error)));
      const readable = blobs.filter((b) => !(b instanceof Error));
      let sent;
      try {
        const progress = (loaded) => { bar.value = size ? loaded / size : 1; showOverall(Math.min(loaded, size)); };
        try {
          sent = readable.length ? await post(readable, progress) : [];
        } catch (error) {
          // The session ended mid-upload: sign in again over the page, then send the batch again.
          if (error.status !== 401 || !(await signInAgain())) throw error;
          state.textContent = 'sending again';
          sent = await post(readable, progress);
        }
      } catch (error) {
        sent = readable.map(() => ({ status: 'rejected', reason: error.message }));
      }
      const outcome = blobs.map((b) => (b instanceof Error ? { status: 'rejected', reason: `could not read it from the archive: ${b.message}` } : sent.shift()));
      done += size;
      bar.value = 1;
      showOverall(0);
      const tally = { stored: 0, already: 0, rejected: 0 };
      outcome.forEach((result, i) => {
        tally[result.status] += 1;
        counts[result.status] += 1;
        if (result.status !== 'stored') {
          problems.append(h('tr', { class: result.status }, h('td', { text: batch[i].label }),
            h('td', { text: result.status === 'already' ? 'already stored' : 'rejected' }), h('td', { text: result.reason })));
        }
      });
      state.textContent = `${tally.stored} stored, ${tally.already} already, ${tally.rejected} rejected`;
      row.dataset.done = 'true';
      renderSummary(counts);
    }
    problemTable.classList.toggle('hidden', problems.rows.length === 0);
    main.dataset.upload = 'done';
    busy = false;
  }

  function renderSummary(counts) {
    clear(summary,
      h('span', { class: 'stored', dataset: { count: counts.stored }, text: `${counts.stored} stored` }),
      h('span', { class: 'already', dataset: { count: counts.already }, text: `${counts.already} already stored` }),
      h('span', { class: 'rejected', dataset: { count: counts.rejected }, text: `${counts.rejected} rejected` }));
  }
}

/** All files below a dropped entry (folders recursively). */
async function walk(entry, prefix = '') {
  if (entry.isFile) {
    return new Promise((resolve) => entry.file((file) => { file.relativePath = `${prefix}${file.name}`; resolve([file]); }, () => resolve([])));
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((resolve) => reader.readEntries(resolve, () => resolve([])));
    if (!batch.length) break;
    children.push(...batch);
  }
  return (await Promise.all(children.map((child) => walk(child, `${prefix}${entry.name}/`)))).flat();
}

/** One STOW-RS request (PS3.18 10.5); resolves to one {status, reason} per file. */
function post(files, onProgress) {
  const boundary = `noctis-${crypto.getRandomValues(new Uint32Array(4)).join('-')}`;
  const parts = [];
  for (const file of files) {
    parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, '\r\n');
  }
  parts.push(`--${boundary}--\r\n`);
  const body = new Blob(parts);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${ROOT}/studies`);
    xhr.setRequestHeader('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader('Accept', 'application/dicom+json');
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded * (files.reduce((s, f) => s + f.size, 0) / (e.total || 1))));
    xhr.addEventListener('error', () => reject(new Error('the connection failed')));
    xhr.addEventListener('load', () => {
      let dataset = {};
      try { dataset = JSON.parse(xhr.responseText || '{}'); } catch { /* not JSON */ }
      if (![200, 202, 409].includes(xhr.status)) {
        reject(Object.assign(new Error(dataset.detail || `HTTP ${xhr.status}`), { status: xhr.status }));
        return;
      }
      resolve(outcomes(files.length, dataset, xhr.getResponseHeader('Warning') || ''));
    });
    xhr.send(body);
  });
}

/** Per part: the Warning headers say "part N failed: ..." / "part N already stored: ...";
 *  the others are stored. Without a Warning for a failed part, its FailureReason names it. */
function outcomes(count, dataset, warnings) {
  const results = Array.from({ length: count }, () => ({ status: 'stored', reason: '' }));
  const texts = [...warnings.matchAll(/299 \S+ "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  for (const text of texts) {
    const match = text.match(/^part (\d+)( failed| already stored)?: (.*)$/);
    if (!match) continue;
    const index = Number(match[1]) - 1;
    if (!results[index]) continue;
    if (match[2] === ' failed') results[index] = { status: 'rejected', reason: match[3] };
    else if (match[2] === ' already stored') results[index] = { status: 'already', reason: match[3] };
  }
  const failed = dataset[FAILED_SEQUENCE]?.Value || [];
  const rejected = results.filter((r) => r.status === 'rejected').length;
  if (failed.length > rejected) {
    // Warnings were cut short: the remaining failures are counted with their reason codes.
    let extra = failed.length - rejected;
    for (const result of results) {
      if (extra === 0) break;
      if (result.status === 'stored') {
        const code = failed[failed.length - extra]?.[FAILURE_REASON]?.Value?.[0];
        Object.assign(result, { status: 'rejected', reason: REASONS[code] || `failure reason ${code}` });
        extra -= 1;
      }
    }
  }
  return results;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}
