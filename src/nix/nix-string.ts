/**
 * Nix strings are bytes, not text: a derivation's env values, args, builder
 * and even env keys may hold any byte sequence (the cp1252 and latin1
 * fixtures carry `C5 C4 D6`). Kiln keeps them as ordinary JS strings in a
 * byte-preserving form, so text stays text and nothing is lost:
 *
 * - every well-formed UTF-8 sequence decodes to its character;
 * - every byte that does not start a well-formed UTF-8 sequence becomes the
 *   lone surrogate U+DC80 + (byte − 0x80) (Python's "surrogateescape").
 *
 * `nixStringToBytes(nixStringFromBytes(b))` returns exactly `b` for every
 * byte sequence. Going the other way, a string is canonical when it is what
 * `nixStringFromBytes` would produce; strings decoded by this layer always
 * are. Never encode these strings with `TextEncoder`/`Buffer.from(s)`: use
 * `nixStringToBytes`, or `nixStringToDisplay` for a lossy, printable form.
 */

const ESCAPE_BASE = 0xdc00;
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
/** A low surrogate in the escape range that is not the second half of a pair. */
const ESCAPED_BYTE = /(?<![\ud800-\udbff])[\udc80-\udcff]/;
const ESCAPED_BYTES = new RegExp(ESCAPED_BYTE.source, 'g');

/** Decodes bytes into the byte-preserving string form. */
export function nixStringFromBytes(bytes: Uint8Array): string {
  if (isAscii(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return decodeEscaping(bytes);
  }
}

/** Encodes a byte-preserving string back into its bytes. Throws TypeError on a lone surrogate that is no escape. */
export function nixStringToBytes(text: string): Uint8Array {
  if (!/[\ud800-\udfff]/.test(text)) return encoder.encode(text);
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        pushUtf8(out, 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
        i++;
        continue;
      }
    } else if (unit >= ESCAPE_BASE + 0x80 && unit <= ESCAPE_BASE + 0xff) {
      out.push(unit - ESCAPE_BASE);
      continue;
    } else if (unit < 0xd800 || unit > 0xdfff) {
      pushUtf8(out, unit);
      continue;
    }
    throw new TypeError(`lone surrogate U+${unit.toString(16).toUpperCase()} at index ${i} is no byte escape`);
  }
  return Uint8Array.from(out);
}

/** True when the string holds no escaped bytes, i.e. its bytes are valid UTF-8. */
export function isUtf8NixString(text: string): boolean {
  return !ESCAPED_BYTE.test(text);
}

/** A printable form: each escaped byte becomes U+FFFD, as Nix does when it prints JSON. */
export function nixStringToDisplay(text: string): string {
  return text.replace(ESCAPED_BYTES, '\ufffd');
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return false;
  return true;
}

function pushUtf8(out: number[], cp: number): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
}

/** Length of the well-formed UTF-8 sequence starting at `i`, or 0 (Unicode table 3-7). */
function sequenceLength(b: Uint8Array, i: number): number {
  const b0 = b[i];
  if (b0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b0 >= 0xe1 && b0 <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

function decodeEscaping(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const length = sequenceLength(bytes, i);
    if (length === 0) {
      out += String.fromCharCode(ESCAPE_BASE + bytes[i]);
      i++;
    } else {
      out += strictDecoder.decode(bytes.subarray(i, i + length));
      i += length;
    }
  }
  return out;
}
