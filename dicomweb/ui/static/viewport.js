// One image viewport: server-rendered frames drawn on a canvas with zoom and pan,
// scrolling (wheel, keys, slider) with prefetch, window/level by drag or preset,
// distance measurement in mm, cine, and the overlay.
import { h } from './dom.js';
import { formatDate, num, text } from './api.js';
import { frameUrl, ImageCache, ownWindow, pixelSpacing } from './series.js';

const PREFETCH_AHEAD = 12;
const PREFETCH_BEHIND = 4;
const MAX_PREFETCH_INFLIGHT = 6;

export class Viewport {
  constructor({ study, cache, onActivate }) {
    this.study = study;
    this.cache = cache || new ImageCache();
    this.onActivate = onActivate || (() => {});
    this.series = null;
    this.index = 0;
    this.window = null;          // null = each image's own window (server default)
    this.shownWindow = null;     // what the overlay shows
    this.zoom = 1;
    this.pan = [0, 0];
    this.tool = 'wl';
    this.direction = 1;
    this.measurements = new Map(); // image key -> [{a, b, mm}]
    this.drawing = null;
    this.image = null;
    this.cine = null;
    this.draws = 0;
    this.canvas = h('canvas');
    this.overlays = { tl: h('div', { class: 'overlay tl' }), tr: h('div', { class: 'overlay tr' }),
      bl: h('div', { class: 'overlay bl' }), br: h('div', { class: 'overlay br' }) };
    this.slider = h('input', { type: 'range', min: 1, max: 1, value: 1, 'aria-label': 'Image', class: 'hidden' });
    this.note = h('div', { class: 'empty-note', text: 'Choose a series' });
    this.el = h('div', { class: 'viewport tool-wl', tabindex: 0, role: 'img', 'aria-label': 'Image viewport' },
      this.canvas, this.note, Object.values(this.overlays), this.slider);
    this.bind();
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.el);
  }

  destroy() { this.stopCine(); this.resizer.disconnect(); this.series = null; }

  async setSeries(series) {
    this.stopCine();
    this.series = series;
    this.index = 0;
    this.zoom = 1;
    this.pan = [0, 0];
    this.image = null;
    this.note.classList.toggle('hidden', series.images.length > 0);
    this.note.textContent = series.images.length ? '' : 'This series has no images';
    this.slider.max = String(Math.max(1, series.images.length));
    this.slider.value = '1';
    this.slider.classList.toggle('hidden', series.images.length < 2);
    this.el.dataset.series = series.series;
    if (series.images.length) await this.show(Math.floor(0));
  }

  get current() { return this.series?.images[this.index] ?? null; }

  url(index) {
    const image = this.series.images[index];
    return frameUrl(this.study, this.series.series, image, this.window);
  }

  async show(index) {
    if (!this.series || !this.series.images.length) return;
    const count = this.series.images.length;
    index = Math.max(0, Math.min(count - 1, index));
    if (index !== this.index) this.direction = index > this.index ? 1 : -1;
    this.index = index;
    this.slider.value = String(index + 1);
    this.el.dataset.index = String(index);
    const url = this.url(index);
    const ready = this.cache.ready(url);
    if (ready) this.present(ready, index);
    else {
      this.updateOverlay();
      try {
        const img = await this.cache.get(url);
        if (this.index === index && this.url(index) === url) this.present(img, index);
      } catch { /* a newer request superseded it, or the frame cannot be rendered */ }
    }
    this.prefetch();
  }

  present(img, index) {
    this.image = img;
    this.shownWindow = this.window || ownWindow(this.series.images[index].ds);
    this.draw();
    this.draws += 1;
    this.el.dataset.drawn = String(this.draws);
    this.el.dataset.shown = String(index);
    this.el.dispatchEvent(new CustomEvent('drawn', { detail: { index } }));
  }

  prefetch() {
    if (!this.series) return;
    const count = this.series.images.length;
    const order = [];
    for (let k = 1; k <= PREFETCH_AHEAD; k += 1) order.push(this.index + k * this.direction);
    for (let k = 1; k <= PREFETCH_BEHIND; k += 1) order.push(this.index - k * this.direction);
    for (const i of order) {
      if (this.cache.inflight >= MAX_PREFETCH_INFLIGHT) break;
      if (i < 0 || i >= count) continue;
      const url = this.url(i);
      if (!this.cache.has(url)) this.cache.get(url).then(() => this.prefetch(), () => {});
    }
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.el.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.el.clientHeight * ratio));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.draw();
    }
  }

  /** Image pixel (column, row) -> canvas pixel, and back. */
  transform() {
    const img = this.image;
    const cw = this.canvas.width;
    const ch = this.canvas.height;
    const scale = Math.min(cw / img.naturalWidth, ch / img.naturalHeight) * this.zoom;
    const ox = cw / 2 + this.pan[0] - (img.naturalWidth * scale) / 2;
    const oy = ch / 2 + this.pan[1] - (img.naturalHeight * scale) / 2;
    return { scale, ox, oy };
  }

  toImage(event) {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = this.canvas.width / rect.width;
    const { scale, ox, oy } = this.transform();
    return [((event.clientX - rect.left) * ratio - ox) / scale, ((event.clientY - rect.top) * ratio - oy) / scale];
  }

  draw() {
    const ctx = this.canvas.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.image) { this.updateOverlay(); return; }
    const { scale, ox, oy } = this.transform();
    ctx.imageSmoothingEnabled = scale < 4;
    ctx.drawImage(this.image, ox, oy, this.image.naturalWidth * scale, this.image.naturalHeight * scale);
    const lines = [...(this.measurements.get(this.key()) || []), ...(this.drawing ? [this.drawing] : [])];
    ctx.lineWidth = 2;
    ctx.font = `${13 * (window.devicePixelRatio || 1)}px system-ui, sans-serif`;
    for (const line of lines) {
      const [ax, ay] = [ox + line.a[0] * scale, oy + line.a[1] * scale];
      const [bx, by] = [ox + line.b[0] * scale, oy + line.b[1] * scale];
      ctx.strokeStyle = '#3fb950';
      ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
      ctx.fillStyle = '#3fb950';
      ctx.fillText(line.label, bx + 6, by - 6);
    }
    this.updateOverlay();
  }

  key() { const img = this.current; return img ? `${img.sop}:${img.frame}` : ''; }

  updateOverlay() {
    const img = this.current;
    if (!img) { Object.values(this.overlays).forEach((o) => { o.textContent = ''; }); return; }
    const ds = img.ds;
    this.overlays.tl.textContent = [text(ds, 'PatientName'), text(ds, 'PatientID'),
      `${formatDate(text(ds, 'StudyDate'))} ${text(ds, 'StudyDescription')}`.trim()].filter(Boolean).join('\n');
    this.overlays.tr.textContent = [`${text(ds, 'Modality')} Series ${text(ds, 'SeriesNumber')}`,
      text(ds, 'SeriesDescription')].filter(Boolean).join('\n');
    const count = this.series.images.length;
    const position = Number.isFinite(img.position) ? `Slice ${img.position.toFixed(1)} mm`
      : (Number.isFinite(num(ds, 'SliceLocation')) ? `Slice ${num(ds, 'SliceLocation').toFixed(1)} mm` : '');
    this.overlays.bl.textContent = [`Image ${this.index + 1} / ${count}`,
      `Instance ${text(ds, 'InstanceNumber')}${img.frame > 1 || this.series.multiframe ? ` frame ${img.frame}` : ''}`,
      position].filter(Boolean).join('\n');
    const win = this.shownWindow;
    this.overlays.br.textContent = [win ? `W ${Math.round(win.width)} L ${Math.round(win.center)}` : 'W/L default',
      `Zoom ${Math.round(this.zoom * 100)}%`].join('\n');
    this.el.dataset.window = win ? `${Math.round(win.center)},${Math.round(win.width)}` : '';
  }

  setWindow(window) {
    this.window = window;
    this.shownWindow = window || (this.current ? ownWindow(this.current.ds) : null);
    this.updateOverlay();
    return this.show(this.index);
  }

  setTool(tool) {
    this.tool = tool;
    this.el.className = this.el.className.replace(/\btool-\w+/g, '').trim() + ` tool-${tool}`;
  }

  reset() { this.zoom = 1; this.pan = [0, 0]; this.measurements.delete(this.key()); this.draw(); }

  startCine(fps) {
    this.stopCine();
    if (!this.series || this.series.images.length < 2) return;
    this.cine = setInterval(() => {
      const next = (this.index + 1) % this.series.images.length;
      this.show(next);
    }, 1000 / fps);
    this.el.dataset.cine = 'on';
  }

  stopCine() { if (this.cine) clearInterval(this.cine); this.cine = null; this.el.dataset.cine = 'off'; }

  bind() {
    const el = this.el;
    el.addEventListener('pointerdown', (e) => this.onActivate(this));
    el.addEventListener('focus', () => this.onActivate(this));
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    let wheelRest = 0;
    el.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.ctrlKey) { this.zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); return; }
      wheelRest += e.deltaY;
      const steps = Math.trunc(wheelRest / 50) || Math.sign(wheelRest);
      wheelRest = 0;
      this.show(this.index + steps);
    }, { passive: false });
    this.slider.addEventListener('input', () => this.show(Number(this.slider.value) - 1));
    this.slider.addEventListener('pointerdown', (e) => e.stopPropagation());
    el.addEventListener('keydown', (e) => this.onKey(e));
    let drag = null;
    el.addEventListener('pointerdown', (e) => {
      if (e.target === this.slider || !this.image) return;
      try { el.setPointerCapture(e.pointerId); } catch { /* synthetic or finished pointer */ }
      const tool = e.button === 1 ? 'pan' : e.button === 2 ? 'zoom' : this.tool;
      drag = { tool, x: e.clientX, y: e.clientY, window: this.shownWindow ? { ...this.shownWindow } : { center: 128, width: 256 } };
      if (tool === 'measure') {
        const p = this.toImage(e);
        this.drawing = { a: p, b: p, label: '' };
      }
    });
    el.addEventListener('pointermove', (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (drag.tool === 'wl') {
        const step = Math.max(1, drag.window.width / 200);
        this.dragWindow({ center: drag.window.center + dy * step, width: Math.max(1, drag.window.width + dx * step) });
      } else if (drag.tool === 'pan') {
        const ratio = window.devicePixelRatio || 1;
        this.pan = [this.pan[0] + (e.clientX - drag.x) * ratio, this.pan[1] + (e.clientY - drag.y) * ratio];
        drag.x = e.clientX; drag.y = e.clientY;
        this.draw();
      } else if (drag.tool === 'zoom') {
        this.zoomBy(Math.exp(-(e.clientY - drag.y) / 200));
        drag.y = e.clientY;
      } else if (drag.tool === 'measure' && this.drawing) {
        this.drawing.b = this.toImage(e);
        this.drawing.label = this.distanceLabel(this.drawing);
        this.draw();
      }
    });
    const end = () => {
      if (drag?.tool === 'measure' && this.drawing) {
        const line = this.drawing;
        this.drawing = null;
        if (Math.hypot(line.b[0] - line.a[0], line.b[1] - line.a[1]) > 1) {
          const list = this.measurements.get(this.key()) || [];
          list.push(line);
          this.measurements.set(this.key(), list);
          el.dataset.measurement = line.label;
        }
        this.draw();
      }
      drag = null;
    };
    el.addEventListener('pointerup', end);
    el.addEventListener('pointercancel', end);
  }

  distanceLabel(line) {
    const dx = line.b[0] - line.a[0];
    const dy = line.b[1] - line.a[1];
    const img = this.current;
    // The rendered image keeps the frame's pixel grid: one image pixel = one DICOM pixel.
    const sx = img ? this.image.naturalWidth / (num(img.ds, 'Columns') || this.image.naturalWidth) : 1;
    const sy = img ? this.image.naturalHeight / (num(img.ds, 'Rows') || this.image.naturalHeight) : 1;
    const spacing = img ? pixelSpacing(img.ds) : null;
    if (!spacing) return `${Math.hypot(dx / sx, dy / sy).toFixed(1)} px`;
    const mm = Math.hypot((dx / sx) * spacing[1], (dy / sy) * spacing[0]);
    return `${mm.toFixed(1)} mm`;
  }

  zoomBy(factor) {
    this.zoom = Math.max(0.1, Math.min(20, this.zoom * factor));
    this.draw();
  }

  /** W/L while dragging: at most one render in flight; the latest window wins. */
  dragWindow(window) {
    this.window = window;
    this.shownWindow = window;
    this.updateOverlay();
    if (this.pendingWindow) { this.pendingWindow.next = true; return; }
    const run = async () => {
      this.pendingWindow = { next: false };
      try { await this.show(this.index); } finally {
        const again = this.pendingWindow.next;
        this.pendingWindow = null;
        if (again) run();
      }
    };
    run();
  }

  onKey(e) {
    const count = this.series?.images.length || 0;
    const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
    if (e.key in moves) { e.preventDefault(); this.show(this.index + moves[e.key]); }
    else if (e.key === 'Home') { e.preventDefault(); this.show(0); }
    else if (e.key === 'End') { e.preventDefault(); this.show(count - 1); }
    else if (e.key === '+' || e.key === '=') this.zoomBy(1.2);
    else if (e.key === '-') this.zoomBy(1 / 1.2);
    else if (e.key === 'r') this.reset();
    else return;
    e.stopPropagation();
  }
}
