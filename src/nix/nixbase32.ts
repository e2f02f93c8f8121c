/**
 * Nix's base32: alphabet `0123456789abcdfghijklmnpqrsvwxyz` (no e, o, t, u),
 * no padding, and the bit string read from the *end*: output character k
 * encodes the 5 bits starting at bit 5·(len−1−k) of the little-endian input.
 */
import { NixFormatError } from './errors.js';

export const NIXBASE32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

const DECODE_TABLE = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < NIXBASE32_ALPHABET.length; i++) table[NIXBASE32_ALPHABET.charCodeAt(i)] = i;
  return table;
})();

/** Characters needed for `byteLength` bytes: ceil(8n/5). */
export function nixbase32EncodedLength(byteLength: number): number {
  return Math.ceil((byteLength * 8) / 5);
}

/** Bytes held by `textLength` characters: floor(5L/8). */
export function nixbase32DecodedLength(textLength: number): number {
  return Math.floor((textLength * 5) / 8);
}

export function encodeNixbase32(bytes: Uint8Array): string {
  const length = nixbase32EncodedLength(bytes.byteLength);
  let out = '';
  for (let n = length - 1; n >= 0; n--) {
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    const word = bytes[i] | ((bytes[i + 1] ?? 0) << 8);
    out += NIXBASE32_ALPHABET[(word >> j) & 31];
  }
  return out;
}

/**
 * Strict decoding: every character must be in the alphabet, the length must
 * be one `encodeNixbase32` can produce, and no bits may be set beyond the
 * last byte. Throws `INVALID_NIXBASE32` naming the offending offset.
 */
export function decodeNixbase32(text: string): Uint8Array {
  const outLength = nixbase32DecodedLength(text.length);
  if (nixbase32EncodedLength(outLength) !== text.length) {
    throw new NixFormatError('INVALID_NIXBASE32', `invalid nixbase32 length ${text.length} of ${JSON.stringify(text)}`, {
      details: { length: text.length },
    });
  }
  const out = new Uint8Array(outLength);
  for (let k = 0; k < text.length; k++) {
    const code = text.charCodeAt(k);
    const value = code < 128 ? DECODE_TABLE[code] : -1;
    if (value < 0) {
      throw new NixFormatError('INVALID_NIXBASE32', `invalid nixbase32 character ${JSON.stringify(text[k])} at offset ${k}`, {
        details: { offset: k },
      });
    }
    const bit = (text.length - 1 - k) * 5;
    const i = bit >> 3;
    const j = bit & 7;
    out[i] |= (value << j) & 0xff;
    const carry = value >> (8 - j);
    if (carry !== 0) {
      if (i + 1 < outLength) out[i + 1] |= carry;
      else {
        throw new NixFormatError(
          'INVALID_NIXBASE32',
          `invalid nixbase32 ${JSON.stringify(text)}: non-zero bits beyond the last byte at offset ${k}`,
          {
            details: { offset: k },
          },
        );
      }
    }
  }
  return out;
}

/** True when `text` decodes; never throws. */
export function isNixbase32(text: string): boolean {
  try {
    decodeNixbase32(text);
    return true;
  } catch {
    return false;
  }
}
