/**
 * The BLAKE3-256 digest that names every castore object. Text form:
 * `blake3-` + standard base64 with padding. Depends only on common/.
 */
import { blake3 } from '../common/blake3.js';
import { bytesEqual, fromBase64, toBase64, toHex } from '../common/encoding.js';
import { CastoreError } from './errors.js';

export const B3_DIGEST_LENGTH = 32;
const TEXT_PREFIX = 'blake3-';

export class B3Digest {
  /** The raw 32 bytes; never mutate. */
  readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /** Validates the length (exactly 32 bytes) and copies nothing. */
  static fromBytes(bytes: Uint8Array): B3Digest {
    if (bytes.byteLength !== B3_DIGEST_LENGTH) {
      throw new CastoreError('INVALID_DIGEST', `invalid digest length ${bytes.byteLength}, expected ${B3_DIGEST_LENGTH}`, {
        details: { length: bytes.byteLength },
      });
    }
    return new B3Digest(bytes);
  }

  /** Parses the `blake3-<base64>` text form. */
  static parse(text: string): B3Digest {
    const decoded = text.startsWith(TEXT_PREFIX) ? fromBase64(text.slice(TEXT_PREFIX.length)) : undefined;
    if (!decoded) throw new CastoreError('INVALID_DIGEST', `invalid digest ${JSON.stringify(text)}: expected blake3-<base64>`);
    return B3Digest.fromBytes(decoded);
  }

  /** Parses 64 hex characters. */
  static fromHex(hex: string): B3Digest {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new CastoreError('INVALID_DIGEST', `invalid hex digest ${JSON.stringify(hex)}`);
    return new B3Digest(new Uint8Array(Buffer.from(hex, 'hex')));
  }

  /** The digest of `data` hashed in one piece. */
  static of(data: Uint8Array): B3Digest {
    return new B3Digest(blake3(data));
  }

  equals(other: B3Digest): boolean {
    return bytesEqual(this.bytes, other.bytes);
  }

  toHex(): string {
    return toHex(this.bytes);
  }

  toString(): string {
    return TEXT_PREFIX + toBase64(this.bytes);
  }

  toJSON(): string {
    return this.toString();
  }
}

/** The digest of zero bytes: the empty blob and the empty directory. */
export const EMPTY_DIGEST = B3Digest.of(new Uint8Array(0));
