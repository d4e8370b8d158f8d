// MPR and MIP: three linked planes (axial, coronal, sagittal) rendered by the server
// (/mpr, /mip), geometry from the Noctis-* response headers. Clicking or dragging in a
// plane moves the crosshair point, which moves the other two planes; the wheel moves a
// plane along its normal; rotating the crosshair makes the coronal and sagittal planes
// oblique; slab MIP / MinIP / average with a thickness control.
import { button, clear, field, h, toast } from './dom.js';
import { request, seriesUrl, query } from './api.js';
import { cross, dot, PRESETS } from './series.js';

const PLANES = [
  { id: 'axial', label: 'Axial', color: '#e5534b' },
  { id: 'coronal', label: 'Coronal', color: '#3fb950' },
  { id: 'sagittal', label: 'Sagittal', color: '#388bfd' },
];
const MODES = [['mpr', 'MPR (thin)'], ['max', 'MIP'], ['min', 'MinIP'], ['avg', 'Average']];

const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
const numbers = (header) => (header || '').split('\\').map(Number);

export async function mount(main, { args }) {
  const [study, series] = args;
  const state = { point: null, angle: 0, mode: 'mpr', thickness: 10, window: null };
  const views = {};

  const modeSelect = h('select', { 'aria-label': 'Projection', class: 'mode' }, MODES.map(([id, label]) => h('option', { value: id, text: label })));
  const thickness = h('input', { type: 'range', min: 1, max: 150, value: state.thickness, class: 'thickness', 'aria-label': 'Slab thickness (mm)' });
  const thicknessText = h('output', { text: `${state.thickness} mm` });
  const angle = h('input', { type: 'range', min: -90, max: 90, value: 0, class: 'angle', 'aria-label': 'Crosshair rotation (degrees)' });
  const angleText = h('output', { text: '0°' });
  const preset = h('select', { 'aria-label': 'Window preset', class: 'preset' }, PRESETS.map((p) => h('option', { value: p.id, text: p.label })));
  const pointText = h('output', { class: 'point' });
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'MPR tools' },
    h('a', { class: 'button', href: `#/study/${encodeURIComponent(study)}?series=${encodeURIComponent(series)}`, text: '‹ Viewer' }),
    modeSelect, field('Slab', h('span', { class: 'group' }, thickness, thicknessText)),
    field('Rotation', h('span', { class: 'group' }, angle, angleText)),
    preset, button('Reset', () => reset()), pointText);
  const grid = h('div', { class: 'grid' });
  const help = h('div', { class: 'help' },
    h('p', { text: 'Click or drag in a plane to move the crosshair: the other two planes follow.' }),
    h('p', { text: 'Wheel or ↑/↓ on a plane: move it along its normal. [ and ]: rotate the crosshair (oblique coronal and sagittal planes).' }),
    h('p', { text: 'Right-drag: window/level. MIP / MinIP / Average project a slab of the chosen thickness around the crosshair point.' }));
  clear(main, h('div', { class: 'mpr' }, toolbar, grid));

  for (const plane of PLANES) {
    const canvas = h('canvas');
    const el = h('div', { class: `viewport tool-crosshair plane-${plane.id}`, tabindex: 0, role: 'img', 'aria-label': `${plane.label} plane`, dataset: { plane: plane.id, updated: '0' } },
      canvas, h('span', { class: 'label', text: plane.label }));
    views[plane.id] = { ...plane, el, canvas, bitmap: null, geometry: null, busy: false, again: false, updates: 0 };
    grid.append(el);
    bindView(views[plane.id]);
  }
  grid.append(h('div', { class: 'viewport' }, help));
  const resizer = new ResizeObserver(() => Object.values(views).forEach(draw));
  resizer.observe(grid);

  function normalOf(id) {
    const t = (state.angle * Math.PI) / 180;
    if (id === 'axial') return [0, 0, 1];
    if (id === 'coronal') return [-Math.sin(t), Math.cos(t), 0];
    return [Math.cos(t), Math.sin(t), 0];
  }

  function url(id) {
    const params = {
      normal: normalOf(id).map((v) => +v.toFixed(6)).join(','),
      point: state.point ? state.point.map((v) => +v.toFixed(3)).join(',') : '',
      window: state.window ? `${Math.round(state.window.center)},${Math.max(1, Math.round(state.window.width))}` : '',
    };
    if (state.mode !== 'mpr') Object.assign(params, { mode: state.mode, thickness: state.thickness });
    return `${seriesUrl(study, series)}/${state.mode === 'mpr' ? 'mpr' : 'mip'}${query(params)}`;
  }

  /** Renders one plane; at most one request per plane in flight, the latest state wins. */
  async function update(view) {
    if (view.busy) { view.again = true; return; }
    view.busy = true;
    const started = performance.now();
    try {
      const address = url(view.id);
      const response = await request(address, { accept: 'image/jpeg' });
      const headers = response.headers;
      const geometry = {
        position: numbers(headers.get('Noctis-Image-Position-Patient')),
        orientation: numbers(headers.get('Noctis-Image-Orientation-Patient')),
        spacing: numbers(headers.get('Noctis-Pixel-Spacing')),
        rows: Number(headers.get('Noctis-Rows')),
        columns: Number(headers.get('Noctis-Columns')),
      };
      const bitmap = await createImageBitmap(await response.blob());
      view.bitmap?.close?.();
      view.bitmap = bitmap;
      view.geometry = geometry;
      view.updates += 1;
      view.el.dataset.updated = String(view.updates);
      view.el.dataset.url = address;
      view.el.dataset.ms = (performance.now() - started).toFixed(1);
      view.el.dataset.orientation = geometry.orientation.map((v) => v.toFixed(3)).join(',');
      performance.measure('noctis:mpr-plane', { start: started, end: performance.now() });
      if (!state.point) {
        // The server's default plane passes through the volume centre: the centre pixel is it.
        state.point = pixelToPatient(geometry, (geometry.columns - 1) / 2, (geometry.rows - 1) / 2);
        showPoint();
      }
      Object.values(views).forEach(draw);
    } catch (error) {
      toast(`${view.label}: ${error.message}`, 'error');
      view.el.dataset.error = error.message;
    } finally {
      view.busy = false;
      if (view.again) { view.again = false; update(view); }
    }
  }

  function pixelToPatient(g, column, row) {
    const r = g.orientation.slice(0, 3);
    const c = g.orientation.slice(3, 6);
    return add(add(g.position, scale(r, column * g.spacing[1])), scale(c, row * g.spacing[0]));
  }

  function patientToPixel(g, p) {
    const d = [p[0] - g.position[0], p[1] - g.position[1], p[2] - g.position[2]];
    return [dot(d, g.orientation.slice(0, 3)) / g.spacing[1], dot(d, g.orientation.slice(3, 6)) / g.spacing[0]];
  }

  function fit(view) {
    const { canvas, bitmap } = view;
    const s = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    // The JPEG may be smaller than Rows x Columns only with a viewport; we ask for none.
    const px = s * (bitmap.width / view.geometry.columns);
    return { s: px, ox: (canvas.width - bitmap.width * s) / 2, oy: (canvas.height - bitmap.height * s) / 2, w: bitmap.width * s, hgt: bitmap.height * s };
  }

  function draw(view) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(view.el.clientWidth * ratio));
    const height = Math.max(1, Math.round(view.el.clientHeight * ratio));
    if (view.canvas.width !== width || view.canvas.height !== height) { view.canvas.width = width; view.canvas.height = height; }
    const ctx = view.canvas.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, height);
    if (!view.bitmap || !view.geometry) return;
    const f = fit(view);
    ctx.drawImage(view.bitmap, f.ox, f.oy, f.w, f.hgt);
    if (!state.point) return;
    const g = view.geometry;
    const [pc, pr] = patientToPixel(g, state.point);
    const cx = f.ox + pc * f.s;
    const cy = f.oy + pr * f.s;
    const mine = normalOf(view.id);
    ctx.lineWidth = 1.5 * ratio;
    for (const other of PLANES) {
      if (other.id === view.id) continue;
      const direction = cross(mine, normalOf(other.id));
      const dc = dot(direction, g.orientation.slice(0, 3)) / g.spacing[1];
      const dr = dot(direction, g.orientation.slice(3, 6)) / g.spacing[0];
      const length = Math.hypot(dc, dr);
      if (length < 1e-9) continue;
      const reach = (width + height) * 2;
      const ux = (dc / length) * reach;
      const uy = (dr / length) * reach;
      ctx.strokeStyle = other.color;
      ctx.beginPath();
      ctx.moveTo(cx - ux, cy - uy);
      ctx.lineTo(cx + ux, cy + uy);
      ctx.stroke();
    }
    view.el.dataset.crosshair = `${pc.toFixed(1)},${pr.toFixed(1)}`;
  }

  function showPoint() {
    if (state.point) pointText.textContent = `(${state.point.map((v) => v.toFixed(1)).join(', ')}) mm`;
  }

  function moveTo(view, event) {
    if (!view.geometry) return;
    const rect = view.canvas.getBoundingClientRect();
    const ratio = view.canvas.width / rect.width;
    const f = fit(view);
    const column = ((event.clientX - rect.left) * ratio - f.ox) / f.s;
    const row = ((event.clientY - rect.top) * ratio - f.oy) / f.s;
    state.point = pixelToPatient(view.geometry, column, row);
    showPoint();
    draw(view);
    PLANES.forEach((p) => { if (p.id !== view.id) update(views[p.id]); });
  }

  function along(view, steps) {
    if (!state.point || !view.geometry) return;
    const step = Math.min(...view.geometry.spacing) || 1;
    state.point = add(state.point, scale(normalOf(view.id), steps * step));
    showPoint();
    update(view);
    Object.values(views).forEach((v) => { if (v !== view) draw(v); });
  }

  function bindView(view) {
    const { el } = view;
    let drag = null;
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    el.addEventListener('pointerdown', (e) => {
      try { el.setPointerCapture(e.pointerId); } catch { /* synthetic or finished pointer */ }
      el.focus();
      if (e.button === 2) {
        drag = { wl: true, x: e.clientX, y: e.clientY, window: state.window || windowOfPreset() || { center: 40, width: 400 } };
      } else { drag = { wl: false }; moveTo(view, e); }
    });
    el.addEventListener('pointermove', (e) => {
      if (!drag) return;
      if (drag.wl) {
        const step = Math.max(1, drag.window.width / 200);
        state.window = { center: drag.window.center + (e.clientY - drag.y) * step, width: Math.max(1, drag.window.width + (e.clientX - drag.x) * step) };
        updateAll();
      } else moveTo(view, e);
    });
    const end = () => { drag = null; };
    el.addEventListener('pointerup', end);
    el.addEventListener('pointercancel', end);
    el.addEventListener('wheel', (e) => { e.preventDefault(); along(view, Math.sign(e.deltaY)); }, { passive: false });
    el.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowUp' || e.key === 'PageUp') { e.preventDefault(); along(view, e.key === 'PageUp' ? -10 : -1); }
      else if (e.key === 'ArrowDown' || e.key === 'PageDown') { e.preventDefault(); along(view, e.key === 'PageDown' ? 10 : 1); }
    });
  }

  function windowOfPreset() {
    const chosen = PRESETS.find((p) => p.id === preset.value);
    return chosen && chosen.center !== undefined ? { center: chosen.center, width: chosen.width } : null;
  }

  function updateAll() { Object.values(views).forEach(update); }

  function setAngle(degrees) {
    state.angle = Math.max(-90, Math.min(90, degrees));
    angle.value = String(state.angle);
    angleText.textContent = `${state.angle}°`;
    update(views.coronal);
    update(views.sagittal);
    draw(views.axial);
  }

  function reset() {
    state.point = null;
    state.window = null;
    preset.value = 'default';
    setAngle(0);
    update(views.axial).then(() => { update(views.coronal); update(views.sagittal); });
  }

  modeSelect.addEventListener('change', () => { state.mode = modeSelect.value; updateAll(); });
  thickness.addEventListener('input', () => {
    state.thickness = Number(thickness.value);
    thicknessText.textContent = `${state.thickness} mm`;
    if (state.mode !== 'mpr') updateAll();
  });
  angle.addEventListener('input', () => setAngle(Number(angle.value)));
  preset.addEventListener('change', () => { state.window = windowOfPreset(); updateAll(); });
  const onKey = (e) => {
    if (e.target.closest('input, select, textarea')) return;
    if (e.key === '[') setAngle(state.angle - 5);
    else if (e.key === ']') setAngle(state.angle + 5);
  };
  document.addEventListener('keydown', onKey);

  await update(views.axial);
  await Promise.all([update(views.coronal), update(views.sagittal)]);
  views.axial.el.focus();
  return () => { document.removeEventListener('keydown', onKey); resizer.disconnect(); };
}
