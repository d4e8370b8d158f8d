// Talking to the archive: DICOMweb (QIDO-RS, WADO-RS, STOW-RS), /workflow, admin APIs.
// Same origin only. State-changing requests carry the CSRF token (double-submit:
// the value of the noctis_csrf cookie set at sign-in) in X-CSRF-Token.

export const ROOT = '/dicom-web';
export const config = { ohif_url: '', weasis: true, dicomweb_root: ROOT };
/** Who is signed in (GET /ui/session); with auth.mode "none" everybody is. */
export const session = { auth: 'none', signed_in: true, name: 'anonymous', permissions: [] };

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)noctis_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

const listeners = { unauthorized: [] };
export function onUnauthorized(fn) { listeners.unauthorized.push(fn); }

// When the session ends under a page (token expired or revoked), the request waits for
// the user to sign in again (a dialog over the page, app.js) and is sent once more: the
// page, its search and its half-filled forms stay as they were. A 401 means the request
// was refused before its handler ran, so sending it again is safe.
let reauthenticate = null;
export function onSessionEnded(fn) { reauthenticate = fn; }
/** For requests made without ``request`` (the upload's XMLHttpRequest): resolves once
 *  signed in again; false when there is no session to renew (auth.mode "none"). */
export async function signInAgain() {
  if (!reauthenticate || session.auth === 'none') return false;
  await reauthenticate();
  return true;
}

export async function request(path, options = {}, retried = false) {
  const { method = 'GET', headers = {}, body, accept = 'application/json', signal } = options;
  const all = { Accept: accept, ...headers };
  if (method !== 'GET' && method !== 'HEAD') all['X-CSRF-Token'] = csrfToken();
  const response = await fetch(path, { method, headers: all, body, signal, credentials: 'same-origin' });
  if (response.status === 401 && path !== '/ui/session') {
    if (!retried && reauthenticate && session.auth !== 'none') {
      await reauthenticate();
      return request(path, options, true);
    }
    listeners.unauthorized.forEach((fn) => fn());
  }
  if (!response.ok) {
    let detail = '';
    try { detail = (await response.json()).detail; } catch { /* not JSON */ }
    throw new ApiError(response.status, detail || response.statusText);
  }
  return response;
}

export async function json(path, options = {}) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

export async function sendJson(path, method, body) {
  return json(path, { method, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** QIDO-RS: {items, total} (total from X-Total-Count). */
export async function qido(path, params = {}, signal) {
  const response = await request(`${ROOT}${path}${query(params)}`, { accept: 'application/dicom+json', signal });
  const items = response.status === 204 ? [] : await response.json();
  const total = Number(response.headers.get('X-Total-Count') ?? items.length);
  return { items, total };
}

export const TAGS = {
  PatientName: '00100010', PatientID: '00100020', PatientBirthDate: '00100030', PatientSex: '00100040',
  StudyDate: '00080020', StudyTime: '00080030', AccessionNumber: '00080050', Modality: '00080060',
  ModalitiesInStudy: '00080061', StudyDescription: '00081030', SeriesDescription: '0008103E',
  StudyInstanceUID: '0020000D', SeriesInstanceUID: '0020000E', SOPInstanceUID: '00080018',
  SOPClassUID: '00080016', SeriesNumber: '00200011', InstanceNumber: '00200013',
  NumberOfStudyRelatedSeries: '00201206', NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209', NumberOfFrames: '00280008', Rows: '00280010',
  Columns: '00280011', PixelSpacing: '00280030', ImagerPixelSpacing: '00181164',
  ImagePositionPatient: '00200032', ImageOrientationPatient: '00200037', SliceLocation: '00201041',
  WindowCenter: '00281050', WindowWidth: '00281051', RescaleIntercept: '00281052',
  RescaleSlope: '00281053', FrameTime: '00181063', PhotometricInterpretation: '00280004',
  SliceThickness: '00180050', StudyID: '00200010', ReferringPhysicianName: '00080090',
};

/** The values of an attribute of a DICOM JSON data set (PS3.18 F.2), or []. */
export function values(ds, keyword) {
  const element = ds?.[TAGS[keyword] || keyword];
  return element?.Value ?? [];
}

export function text(ds, keyword) {
  return values(ds, keyword).map((v) => (v && typeof v === 'object' ? personName(v) : String(v))).join('\\');
}

export function num(ds, keyword, index = 0) {
  const value = values(ds, keyword)[index];
  return value === undefined || value === null || value === '' ? NaN : Number(value);
}

export function personName(pn) {
  const alpha = pn?.Alphabetic ?? '';
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = alpha.split('^');
  return [prefix, given, middle, family, suffix].filter(Boolean).join(' ') || alpha;
}

export function formatDate(da) {
  return da && da.length === 8 ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : (da || '');
}

export function formatTime(tm) {
  return tm && tm.length >= 4 ? `${tm.slice(0, 2)}:${tm.slice(2, 4)}` : (tm || '');
}

export function toDA(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
}

export function seriesUrl(study, series) {
  return `${ROOT}/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
}

export function thumbnailUrl(study, series) {
  return `${seriesUrl(study, series)}/thumbnail`;
}

export function weasisUrl(study) {
  const base = `${location.origin}${config.dicomweb_root}`;
  return `weasis://${encodeURIComponent(`$dicom:rs --url "${base}" -r "studyUID=${study}"`)}`;
}

export function ohifUrl(study) {
  return config.ohif_url ? `${config.ohif_url}/viewer?StudyInstanceUIDs=${encodeURIComponent(study)}` : '';
}

/** Whether the signed-in principal holds ``permission`` (query, retrieve, store, workflow,
 *  delete, admin): pages and actions follow it; the APIs enforce it anyway. */
export function may(permission) {
  return (session.permissions || []).includes(permission);
}

export async function loadSession() {
  try {
    const current = await json('/ui/session');
    for (const key of Object.keys(session)) if (!(key in current)) delete session[key];
    Object.assign(session, current);
  } catch { /* keep the defaults */ }
  return session;
}

export async function loadConfig() {
  try {
    Object.assign(config, await json('/ui/config.json'));
  } catch { /* defaults */ }
}

/** Server-Sent Events from /workflow/events, reconnecting (EventSource does). */
export function events(kinds, onEvent) {
  const source = new EventSource(`/workflow/events${query({ kinds: kinds.join(',') })}`);
  for (const kind of kinds) {
    source.addEventListener(kind, (event) => {
      try { onEvent(kind, JSON.parse(event.data)); } catch { /* malformed event */ }
    });
  }
  return () => source.close();
}
