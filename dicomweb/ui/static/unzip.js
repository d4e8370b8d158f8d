// Zip archives opened in the browser (APPNOTE.TXT 6.3): the central directory is read
// from the end of the file, each member is read only when its batch is sent (stored, or
// deflated and inflated by the browser's DecompressionStream), so a large archive never
// sits whole in memory. ZIP64 sizes and offsets are understood. Members that cannot be
// read (encrypted, another compression method) come back with their reason.

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

export function looksLikeZip(file) {
  return /\.zip$/i.test(file.name) || file.type === 'application/zip' || file.type === 'application/x-zip-compressed';
}

async function bytes(blob, start, end) {
  return new DataView(await blob.slice(start, end).arrayBuffer());
}

function u64(view, at) {
  return Number(view.getBigUint64(at, true));
}

/** The members of ``file``: [{name, size, read() -> Promise<Blob>}] and
 *  [{name, reason}] for those that cannot be read. Throws when it is not a zip. */
export async function listZip(file) {
  const tailStart = Math.max(0, file.size - (22 + 65535));
  const tail = await bytes(file, tailStart, file.size);
  let at = -1;
  for (let i = tail.byteLength - 22; i >= 0; i -= 1) {
    if (tail.getUint32(i, true) === EOCD) { at = i; break; }
  }
  if (at < 0) throw new Error('not a zip archive (no end of central directory)');
  let count = tail.getUint16(at + 10, true);
  let size = tail.getUint32(at + 12, true);
  let offset = tail.getUint32(at + 16, true);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    const locatorAt = tailStart + at - 20;
    const locator = await bytes(file, locatorAt, locatorAt + 20);
    if (locator.getUint32(0, true) !== EOCD64_LOCATOR) throw new Error('damaged ZIP64 archive (no locator)');
    const recordAt = u64(locator, 8);
    const record = await bytes(file, recordAt, recordAt + 56);
    if (record.getUint32(0, true) !== EOCD64) throw new Error('damaged ZIP64 archive (no end record)');
    count = u64(record, 32);
    size = u64(record, 40);
    offset = u64(record, 48);
  }
  const directory = await bytes(file, offset, offset + size);
  const decoder = new TextDecoder();
  const members = [];
  const refused = [];
  let p = 0;
  for (let n = 0; n < count; n += 1) {
    if (p + 46 > directory.byteLength || directory.getUint32(p, true) !== CENTRAL) {
      throw new Error('damaged zip archive (central directory)');
    }
    const flags = directory.getUint16(p + 8, true);
    const method = directory.getUint16(p + 10, true);
    let compressed = directory.getUint32(p + 20, true);
    let plain = directory.getUint32(p + 24, true);
    const nameLength = directory.getUint16(p + 28, true);
    const extraLength = directory.getUint16(p + 30, true);
    const commentLength = directory.getUint16(p + 32, true);
    let local = directory.getUint32(p + 42, true);
    const name = decoder.decode(new Uint8Array(directory.buffer, directory.byteOffset + p + 46, nameLength));
    // ZIP64 extended information (header 0x0001): the 32-bit fields that overflowed, in order.
    let e = p + 46 + nameLength;
    const extraEnd = e + extraLength;
    while (e + 4 <= extraEnd) {
      const id = directory.getUint16(e, true);
      const length = directory.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        if (plain === 0xffffffff) { plain = u64(directory, q); q += 8; }
        if (compressed === 0xffffffff) { compressed = u64(directory, q); q += 8; }
        if (local === 0xffffffff) { local = u64(directory, q); q += 8; }
      }
      e += 4 + length;
    }
    p = extraEnd + commentLength;
    if (name.endsWith('/')) continue; // a folder
    if (flags & 0x1) { refused.push({ name, reason: 'encrypted zip member (not supported: unzip it first)' }); continue; }
    if (method !== 0 && method !== 8) { refused.push({ name, reason: `zip compression method ${method} is not supported (stored or deflate only)` }); continue; }
    members.push({
      name,
      size: plain,
      async read() {
        const header = await bytes(file, local, local + 30);
        if (header.getUint32(0, true) !== LOCAL) throw new Error('damaged zip member (local header)');
        const start = local + 30 + header.getUint16(26, true) + header.getUint16(28, true);
        const raw = file.slice(start, start + compressed);
        if (method === 0) return raw;
        const inflated = raw.stream().pipeThrough(new DecompressionStream('deflate-raw'));
        return new Response(inflated).blob();
      },
    });
  }
  return { members, refused };
}
