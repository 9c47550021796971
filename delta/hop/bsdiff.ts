/**
 * The BSDIFF operation of a hop delta (format `gantry-hop-v2`, op kind 5): bsdiff's encoding
 * (Colin Percival, "Naive differences of executable code", 2003) in Gantry's own byte layout.
 * A recompiled binary shifts most of its addresses: its bytes are *approximately* where they were,
 * so the patch is a sequence of (approximate copy from the old file, literal extra bytes) pairs, the
 * approximate copies carried as byte-wise differences that are mostly zeros. The data is left
 * uncompressed here: the whole operation stream of the delta is compressed afterwards, and the
 * three streams of a patch are kept apart (control, then every difference, then every extra byte)
 * so that compressor sees long runs of like bytes.
 *
 * Layout of an operation's data:
 *
 *   control count (varint) | difference bytes (varint) | extra bytes (varint) |
 *   control triples (varint add length, varint extra length, zigzag varint old-position seek) |
 *   differences | extras
 *
 * Applying one control triple: `add` bytes of output are old[pos + i] + difference[i] (mod 256),
 * then `extra` literal bytes, then pos += add + seek. Every access is bounds-checked against the old
 * bytes, the streams and the output length: a malformed patch is refused, never read past.
 */

/** Suffix array of `data` with the empty suffix first (SA[0] = data.length), by SA-IS. */
export function suffixArray(data: Uint8Array): Int32Array {
  const n = data.length + 1;
  // Bytes shifted by one so that 0 is a unique smallest sentinel at the end.
  const s = new Uint16Array(n);
  for (let i = 0; i < data.length; i++) s[i] = data[i]! + 1;
  s[n - 1] = 0;
  const sa = new Int32Array(n);
  sais(s, sa, n, 257);
  return sa;
}

function getBuckets(s: ArrayLike<number>, bkt: Int32Array, n: number, k: number, end: boolean): void {
  bkt.fill(0, 0, k);
  for (let i = 0; i < n; i++) bkt[s[i]!]!++;
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const c = bkt[i]!;
    sum += c;
    bkt[i] = end ? sum : sum - c;
  }
}

function induce(
  s: ArrayLike<number>,
  sa: Int32Array,
  t: Uint8Array,
  bkt: Int32Array,
  n: number,
  k: number,
): void {
  getBuckets(s, bkt, n, k, false);
  for (let i = 0; i < n; i++) {
    const j = sa[i]! - 1;
    if (j >= 0 && t[j] === 0) sa[bkt[s[j]!]!++] = j;
  }
  getBuckets(s, bkt, n, k, true);
  for (let i = n - 1; i >= 0; i--) {
    const j = sa[i]! - 1;
    if (j >= 0 && t[j] === 1) sa[--bkt[s[j]!]!] = j;
  }
}

/** SA-IS (Nong, Zhang, Chan 2009) over s[0..n), s[n-1] the unique smallest symbol 0, alphabet [0, k). */
function sais(s: ArrayLike<number>, sa: Int32Array, n: number, k: number): void {
  if (n === 1) {
    sa[0] = 0;
    return;
  }
  const t = new Uint8Array(n); // 1: S-type, 0: L-type
  t[n - 1] = 1;
  for (let i = n - 2; i >= 0; i--) {
    t[i] = s[i]! < s[i + 1]! || (s[i] === s[i + 1] && t[i + 1] === 1) ? 1 : 0;
  }
  const isLms = (i: number): boolean => i > 0 && t[i] === 1 && t[i - 1] === 0;
  const bkt = new Int32Array(k);
  getBuckets(s, bkt, n, k, true);
  sa.fill(-1, 0, n);
  for (let i = 1; i < n; i++) if (isLms(i)) sa[--bkt[s[i]!]!] = i;
  induce(s, sa, t, bkt, n, k);

  // The sorted LMS substrings, named by equality.
  let n1 = 0;
  for (let i = 0; i < n; i++) if (isLms(sa[i]!)) sa[n1++] = sa[i]!;
  sa.fill(-1, n1, n);
  let name = 0;
  let prev = -1;
  for (let i = 0; i < n1; i++) {
    const pos = sa[i]!;
    let diff = false;
    for (let d = 0; d < n; d++) {
      if (prev === -1 || s[pos + d] !== s[prev + d] || t[pos + d] !== t[prev + d]) {
        diff = true;
        break;
      } else if (d > 0 && (isLms(pos + d) || isLms(prev + d))) break;
    }
    if (diff) {
      name++;
      prev = pos;
    }
    sa[n1 + (pos >> 1)] = name - 1;
  }
  for (let i = n - 1, j = n - 1; i >= n1; i--) if (sa[i]! >= 0) sa[j--] = sa[i]!;

  // Sort the LMS suffixes: recursively when names repeat.
  const s1 = sa.subarray(n - n1, n);
  const sa1 = sa.subarray(0, n1);
  if (name < n1) sais(s1, sa1, n1, name);
  else for (let i = 0; i < n1; i++) sa1[s1[i]!] = i;

  getBuckets(s, bkt, n, k, true);
  for (let i = 1, j = 0; i < n; i++) if (isLms(i)) s1[j++] = i;
  for (let i = 0; i < n1; i++) sa1[i] = s1[sa1[i]!]!;
  sa.fill(-1, n1, n);
  for (let i = n1 - 1; i >= 0; i--) {
    const j = sa[i]!;
    sa[i] = -1;
    sa[--bkt[s[j]!]!] = j;
  }
  induce(s, sa, t, bkt, n, k);
}

function matchLen(a: Uint8Array, ai: number, b: Uint8Array, bi: number): number {
  let i = 0;
  const max = Math.min(a.length - ai, b.length - bi);
  while (i < max && a[ai + i] === b[bi + i]) i++;
  return i;
}

/** The longest match of target[from..] among the old file's suffixes: [length, position]. */
function search(
  sa: Int32Array,
  old: Buffer,
  target: Buffer,
  from: number,
  lo: number,
  hi: number,
): [number, number] {
  while (hi - lo >= 2) {
    const mid = lo + ((hi - lo) >> 1);
    const p = sa[mid]!;
    const m = Math.min(old.length - p, target.length - from);
    // Most comparisons differ within a few bytes: a loop beats allocating views for Buffer.compare.
    let i = 0;
    while (i < m && old[p + i] === target[from + i]) i++;
    if (i < m && old[p + i]! < target[from + i]!) lo = mid;
    else hi = mid;
  }
  const x = matchLen(old, sa[lo]!, target, from);
  const y = matchLen(old, sa[hi]!, target, from);
  return x > y ? [x, sa[lo]!] : [y, sa[hi]!];
}

class Growable {
  buf: Buffer;
  len = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, size));
  }
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }
  varint(v: number): void {
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

const zigzag = (v: number): number => (v < 0 ? -2 * v - 1 : 2 * v);
const unzigzag = (v: number): number => (v % 2 === 1 ? -(v + 1) / 2 : v / 2);

/**
 * The bsdiff patch of `target` against `old` (the classic scan: a match is taken once it is more
 * than 8 bytes better than continuing the current approximate alignment, and each alignment is
 * extended forwards and backwards while at least half its bytes agree). `sa` may be passed when the
 * same old bytes serve several targets.
 */
export function bsdiffEncode(old: Buffer, target: Buffer, sa: Int32Array = suffixArray(old)): Buffer {
  const oldSize = old.length;
  const newSize = target.length;
  const control = new Growable(1024);
  const diff = new Growable(newSize);
  const extra = new Growable(1024);
  let controls = 0;
  let scan = 0;
  let len = 0;
  let pos = 0;
  let lastScan = 0;
  let lastPos = 0;
  let lastOffset = 0;
  while (scan < newSize) {
    let oldScore = 0;
    let scsc = (scan += len);
    for (; scan < newSize; scan++) {
      [len, pos] = search(sa, old, target, scan, 0, oldSize);
      for (; scsc < scan + len; scsc++) {
        if (scsc + lastOffset < oldSize && old[scsc + lastOffset] === target[scsc]) oldScore++;
      }
      if ((len === oldScore && len !== 0) || len > oldScore + 8) break;
      if (scan + lastOffset < oldSize && old[scan + lastOffset] === target[scan]) oldScore--;
    }
    if (len !== oldScore || scan === newSize) {
      let s = 0;
      let sf = 0;
      let lenF = 0;
      for (let i = 0; lastScan + i < scan && lastPos + i < oldSize;) {
        if (old[lastPos + i] === target[lastScan + i]) s++;
        i++;
        if (s * 2 - i > sf * 2 - lenF) {
          sf = s;
          lenF = i;
        }
      }
      let lenB = 0;
      if (scan < newSize) {
        let sb = 0;
        s = 0;
        for (let i = 1; scan >= lastScan + i && pos >= i; i++) {
          if (old[pos - i] === target[scan - i]) s++;
          if (s * 2 - i > sb * 2 - lenB) {
            sb = s;
            lenB = i;
          }
        }
      }
      if (lastScan + lenF > scan - lenB) {
        const overlap = lastScan + lenF - (scan - lenB);
        s = 0;
        let ss = 0;
        let lenS = 0;
        for (let i = 0; i < overlap; i++) {
          if (target[lastScan + lenF - overlap + i] === old[lastPos + lenF - overlap + i]) s++;
          if (target[scan - lenB + i] === old[pos - lenB + i]) s--;
          if (s > ss) {
            ss = s;
            lenS = i + 1;
          }
        }
        lenF += lenS - overlap;
        lenB -= lenS;
      }
      for (let i = 0; i < lenF; i++) diff.byte((target[lastScan + i]! - old[lastPos + i]!) & 0xff);
      const extraLen = scan - lenB - (lastScan + lenF);
      extra.bytes(target.subarray(lastScan + lenF, lastScan + lenF + extraLen));
      control.varint(lenF);
      control.varint(extraLen);
      control.varint(zigzag(pos - lenB - (lastPos + lenF)));
      controls++;
      lastScan = scan - lenB;
      lastPos = pos - lenB;
      lastOffset = pos - scan;
    }
  }
  const head = new Growable(16);
  head.varint(controls);
  head.varint(diff.len);
  head.varint(extra.len);
  return Buffer.concat([head.result(), control.result(), diff.result(), extra.result()]);
}

/**
 * The patch of `target` against `old` of the same length at the same place: one control triple, the
 * whole output as differences (no suffix array; for blocks rewritten in place, such as inode tables).
 */
export function bsdiffInPlace(old: Buffer, target: Buffer): Buffer {
  if (old.length !== target.length) throw new RangeError('in-place differences need equal lengths');
  const head = new Growable(32);
  head.varint(1);
  head.varint(target.length);
  head.varint(0);
  head.varint(target.length);
  head.varint(0);
  head.varint(0);
  const diff = Buffer.allocUnsafe(target.length);
  for (let i = 0; i < target.length; i++) diff[i] = (target[i]! - old[i]!) & 0xff;
  return Buffer.concat([head.result(), diff]);
}

class Cursor {
  at = 0;
  constructor(
    private readonly b: Buffer,
    private readonly end: number,
  ) {}
  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.at >= this.end) throw new BsdiffError('the patch ends inside a number');
      const byte = this.b[this.at++]!;
      v += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(v)) break;
        return v;
      }
      scale *= 0x80;
    }
    throw new BsdiffError('a number of the patch is too large');
  }
}

export class BsdiffError extends Error {}

/**
 * Applies a patch made by bsdiffEncode: the output is exactly `outLen` bytes (memory: the old bytes,
 * the patch and the output). Throws BsdiffError when the patch is malformed or does not fit.
 */
export function bsdiffDecode(old: Uint8Array, patch: Buffer, outLen: number): Buffer {
  const out = Buffer.allocUnsafe(outLen);
  for (const piece of bsdiffDecodePieces(old, patch, outLen, out)) void piece;
  return out;
}

/**
 * The same output as bsdiffDecode, written into `piece` and yielded each time it is full (then the
 * rest), so a long output needs no buffer of its own: the caller hashes or writes each piece before
 * asking for the next, which overwrites it. The patch's consistency is checked as it is read and at
 * its end (after the last piece): a caller must not trust the pieces before the generator is done.
 */
export function* bsdiffDecodePieces(
  old: Uint8Array,
  patch: Buffer,
  outLen: number,
  piece: Buffer,
): Generator<Buffer, void> {
  const head = new Cursor(patch, patch.length);
  const controls = head.varint();
  const diffLen = head.varint();
  const extraLen = head.varint();
  if (diffLen + extraLen !== outLen)
    throw new BsdiffError('the patch builds another length than its operation');
  if (diffLen + extraLen > patch.length - head.at)
    throw new BsdiffError('the patch is shorter than its streams');
  const controlEnd = patch.length - diffLen - extraLen;
  const ctl = new Cursor(patch, controlEnd);
  ctl.at = head.at;
  let diffAt = controlEnd;
  let extraAt = controlEnd + diffLen;
  let o = 0;
  let pos = 0;
  let fill = 0;
  for (let c = 0; c < controls; c++) {
    const add = ctl.varint();
    const ext = ctl.varint();
    const seek = unzigzag(ctl.varint());
    if (add > outLen - o || add > controlEnd + diffLen - diffAt)
      throw new BsdiffError('a difference overruns');
    if (add > 0 && (pos < 0 || pos + add > old.length))
      throw new BsdiffError('a difference reads outside the old bytes');
    for (let left = add; left > 0;) {
      const n = Math.min(left, piece.length - fill);
      for (let i = 0; i < n; i++) piece[fill + i] = (old[pos + i]! + patch[diffAt + i]!) & 0xff;
      fill += n;
      o += n;
      diffAt += n;
      pos += n;
      left -= n;
      if (fill === piece.length) {
        yield piece;
        fill = 0;
      }
    }
    if (ext > outLen - o || ext > patch.length - extraAt) throw new BsdiffError('the extra bytes overrun');
    for (let left = ext; left > 0;) {
      const n = Math.min(left, piece.length - fill);
      patch.copy(piece, fill, extraAt, extraAt + n);
      fill += n;
      o += n;
      extraAt += n;
      left -= n;
      if (fill === piece.length) {
        yield piece;
        fill = 0;
      }
    }
    pos += seek;
  }
  if (ctl.at !== controlEnd || o !== outLen || diffAt !== controlEnd + diffLen || extraAt !== patch.length) {
    throw new BsdiffError('the patch does not account for all its bytes');
  }
  if (fill > 0) yield piece.subarray(0, fill);
}
