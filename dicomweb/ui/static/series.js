// A series as the viewer sees it: its images (instance + frame) in display order, from the
// stored metadata (WADO-RS), and the URLs of their server-rendered frames.
import { json, num, ROOT, seriesUrl, text, values } from './api.js';

export async function loadSeries(study, series) {
  const metadata = await json(`${seriesUrl(study, series)}/metadata`, { accept: 'application/dicom+json' });
  const images = [];
  for (const ds of metadata) {
    const frames = Math.max(1, num(ds, 'NumberOfFrames') || 1);
    for (let frame = 1; frame <= frames; frame += 1) images.push({ ds, frame, sop: text(ds, 'SOPInstanceUID') });
  }
  sortImages(images);
  return { study, series, images, multiframe: metadata.length === 1 && images.length > 1 };
}

/** Slices along the normal of Image Orientation (Patient) when every image has geometry,
 *  else by Instance Number; frames of one instance in frame order. */
function sortImages(images) {
  const iop = values(images[0]?.ds, 'ImageOrientationPatient').map(Number);
  const normal = iop.length === 6 ? cross(iop.slice(0, 3), iop.slice(3, 6)) : null;
  const position = (img) => {
    const ipp = values(img.ds, 'ImagePositionPatient').map(Number);
    return normal && ipp.length === 3 ? dot(ipp, normal) : NaN;
  };
  const byPosition = images.every((img) => Number.isFinite(position(img))) && new Set(images.map((i) => i.sop)).size > 1;
  images.sort((a, b) => {
    if (byPosition) return position(a) - position(b);
    return (num(a.ds, 'InstanceNumber') || 0) - (num(b.ds, 'InstanceNumber') || 0) || a.frame - b.frame;
  });
  images.forEach((img) => { img.position = position(img); });
}

export function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
export function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

export function frameUrl(study, series, image, window) {
  const base = `${ROOT}/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`
    + `/instances/${encodeURIComponent(image.sop)}/frames/${image.frame}/rendered`;
  return window ? `${base}?window=${Math.round(window.center)},${Math.max(1, Math.round(window.width))}` : base;
}

/** The image's own window (first value of Window Center / Width), or null. */
export function ownWindow(ds) {
  const center = num(ds, 'WindowCenter');
  const width = num(ds, 'WindowWidth');
  return Number.isFinite(center) && Number.isFinite(width) && width > 0 ? { center, width } : null;
}

/** Pixel Spacing (row spacing, column spacing) in mm, or null (PS3.3 10.7.1.3). */
export function pixelSpacing(ds) {
  const spacing = values(ds, 'PixelSpacing').map(Number);
  if (spacing.length === 2 && spacing.every((v) => v > 0)) return spacing;
  const imager = values(ds, 'ImagerPixelSpacing').map(Number);
  return imager.length === 2 && imager.every((v) => v > 0) ? imager : null;
}

export const PRESETS = [
  { id: 'default', label: "Series' own" },
  { id: 'brain', label: 'CT brain', center: 40, width: 80 },
  { id: 'lung', label: 'CT lung', center: -600, width: 1500 },
  { id: 'bone', label: 'CT bone', center: 400, width: 1800 },
  { id: 'abdomen', label: 'CT abdomen', center: 40, width: 400 },
];

/** An image cache: url -> Promise<HTMLImageElement>, decoded, least recently used dropped. */
export class ImageCache {
  constructor(limit = 600) { this.limit = limit; this.items = new Map(); this.inflight = 0; }

  get(url) {
    let entry = this.items.get(url);
    if (entry) { this.items.delete(url); this.items.set(url, entry); return entry.promise; }
    const img = new Image();
    img.decoding = 'async';
    this.inflight += 1;
    const promise = new Promise((resolve, reject) => {
      img.onload = () => { this.inflight -= 1; entry.ready = true; resolve(img); };
      img.onerror = () => { this.inflight -= 1; this.items.delete(url); reject(new Error('image failed to load')); };
    });
    promise.catch(() => {});
    img.src = url;
    entry = { promise, img, ready: false };
    this.items.set(url, entry);
    while (this.items.size > this.limit) this.items.delete(this.items.keys().next().value);
    return promise;
  }

  ready(url) { const entry = this.items.get(url); return entry && entry.ready ? entry.img : null; }
  has(url) { return this.items.has(url); }
}
