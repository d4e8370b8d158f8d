// The viewer: series thumbnails, 1x1 / 1x2 / 2x2 layouts of viewports, tools, presets,
// cine, the attribute browser, and the way to MPR / MIP.
import { button, clear, h, toast } from './dom.js';
import { qido, text } from './api.js';
import { NOT_IMAGES, seriesCard, studyLinks } from './studies.js';
import { ImageCache, loadSeries, PRESETS } from './series.js';
import { Viewport } from './viewport.js';
import { showAttributes } from './attributes.js';

const LAYOUTS = { '1x1': 1, '1x2': 2, '2x2': 4 };
const TOOLS = [['wl', 'W/L'], ['pan', 'Pan'], ['zoom', 'Zoom'], ['measure', 'Measure']];

export async function mount(main, { args, params }) {
  const study = args[0];
  const started = performance.now();
  let firstImage = false;
  const cache = new ImageCache();
  const loaded = new Map();
  const viewports = [];
  let active = null;
  let tool = 'wl';

  const sidebar = h('nav', { class: 'sidebar', 'aria-label': 'Series' });
  const grid = h('div', { class: 'grid layout-1x1' });
  const preset = h('select', { 'aria-label': 'Window preset', class: 'preset' }, PRESETS.map((p) => h('option', { value: p.id, text: p.label })));
  const fps = h('select', { 'aria-label': 'Cine speed' }, [5, 10, 15, 20, 30].map((n) => h('option', { value: n, text: `${n} fps` })));
  fps.value = '10';
  const cineButton = button('▶ Cine', () => toggleCine(), { class: 'cine', 'aria-pressed': 'false' });
  const toolButtons = TOOLS.map(([id, label]) => button(label, () => setTool(id), { dataset: { tool: id }, 'aria-pressed': String(id === tool) }));
  const layoutButtons = Object.keys(LAYOUTS).map((id) => button(id, () => setLayout(id), { dataset: { layout: id }, 'aria-pressed': String(id === '1x1') }));
  const mprLink = h('a', { class: 'button mpr-link', href: '#', text: 'MPR / MIP' });
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Viewer tools' },
    h('a', { class: 'button', href: '#/studies', text: '‹ Studies' }),
    h('div', { class: 'group', role: 'group', 'aria-label': 'Layout' }, layoutButtons),
    h('div', { class: 'group', role: 'group', 'aria-label': 'Mouse tool' }, toolButtons),
    preset,
    button('Reset', () => active?.reset()),
    h('div', { class: 'group' }, cineButton, fps),
    button('Attributes', () => openAttributes(), { class: 'attributes-button' }),
    mprLink);
  clear(main, h('div', { class: 'viewer' }, sidebar, h('div', { class: 'stage' }, toolbar, grid)));

  function activate(viewport) {
    active = viewport;
    viewports.forEach((v) => v.el.classList.toggle('active', v === viewport));
    sidebar.querySelectorAll('.series-card').forEach((card) => card.classList.toggle('selected', card.dataset.series === viewport.series?.series));
    updateMprLink();
  }

  function updateMprLink() {
    const series = active?.series?.series;
    mprLink.href = series ? `#/mpr/${encodeURIComponent(study)}/${encodeURIComponent(series)}` : '#';
    mprLink.classList.toggle('hidden', !series || (active.series.images.length < 3));
  }

  function makeViewport() {
    const viewport = new Viewport({ study, cache, onActivate: activate });
    viewport.setTool(tool);
    viewport.el.addEventListener('drawn', () => {
      if (!firstImage) {
        firstImage = true;
        const ms = performance.now() - started;
        main.dataset.firstImageMs = ms.toFixed(1);
        performance.measure('noctis:first-image', { start: started, end: performance.now() });
      }
    });
    viewports.push(viewport);
    return viewport;
  }

  function setLayout(id) {
    const count = LAYOUTS[id];
    layoutButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.layout === id)));
    grid.className = `grid layout-${id}`;
    while (viewports.length < count) {
      const viewport = makeViewport();
      const next = imageSeries[viewports.length - 1];
      if (next && viewports.length > 1) pick(text(next, 'SeriesInstanceUID'), viewport);
    }
    while (viewports.length > count) {
      const gone = viewports.pop();
      gone.destroy();
      if (gone === active) active = viewports[0];
    }
    grid.replaceChildren(...viewports.map((v) => v.el));
    viewports.forEach((v) => v.resize());
    activate(active || viewports[0]);
  }

  function setTool(id) {
    tool = id;
    toolButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.tool === id)));
    viewports.forEach((v) => v.setTool(id));
  }

  function toggleCine() {
    if (!active) return;
    if (active.cine) active.stopCine(); else active.startCine(Number(fps.value));
    cineButton.setAttribute('aria-pressed', String(Boolean(active.cine)));
    cineButton.textContent = active.cine ? '❚❚ Stop' : '▶ Cine';
  }

  preset.addEventListener('change', () => {
    const chosen = PRESETS.find((p) => p.id === preset.value);
    active?.setWindow(chosen.center === undefined ? null : { center: chosen.center, width: chosen.width });
    active?.el.focus();
  });

  function openAttributes() {
    const image = active?.current;
    if (!image) { toast('Open a series first'); return; }
    showAttributes(image.ds, `Attributes — instance ${text(image.ds, 'InstanceNumber')}`);
  }

  async function pick(seriesUid, viewport = active) {
    if (!viewport) return;
    viewport.onActivate(viewport);
    try {
      if (!loaded.has(seriesUid)) loaded.set(seriesUid, loadSeries(study, seriesUid));
      const series = await loaded.get(seriesUid);
      await viewport.setSeries(series);
      activate(viewport);
    } catch (error) {
      loaded.delete(seriesUid);
      toast(`Could not open the series: ${error.message}`, 'error');
    }
  }

  const onKey = (e) => {
    if (e.target.closest('input, select, textarea, .dialog')) return;
    if (e.key === 'c' && !e.ctrlKey && !e.metaKey) toggleCine();
    else if (e.key === 'a' && !e.ctrlKey && !e.metaKey) openAttributes();
    else if (['w', 'p', 'z', 'm'].includes(e.key) && !e.ctrlKey && !e.metaKey) setTool({ w: 'wl', p: 'pan', z: 'zoom', m: 'measure' }[e.key]);
    else if (/^[1-5]$/.test(e.key) && !e.ctrlKey) { preset.value = PRESETS[Number(e.key) - 1].id; preset.dispatchEvent(new Event('change')); }
    else if (active && e.target === document.body) active.onKey(e);
  };
  document.addEventListener('keydown', onKey);

  const { items: seriesList } = await qido(`/studies/${encodeURIComponent(study)}/series`, { orderby: 'SeriesNumber' });
  const imageSeries = seriesList.filter((s) => !NOT_IMAGES.has(text(s, 'Modality')));
  clear(sidebar, imageSeries.map((s) => seriesCard(study, s, (uid) => pick(uid))), studyLinks(study));
  sidebar.querySelector('.links a')?.remove(); // "Open viewer": we are in it
  setLayout('1x1');
  const wanted = params.get('series') || (imageSeries[0] && text(imageSeries[0], 'SeriesInstanceUID'));
  if (wanted) await pick(wanted, viewports[0]);
  else clear(grid, h('p', { class: 'empty-note', text: 'This study has no image series.' }));
  viewports[0]?.el.focus();

  return () => {
    document.removeEventListener('keydown', onKey);
    viewports.forEach((v) => v.destroy());
  };
}
