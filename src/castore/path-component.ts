/**
 * Validated entry names. A name is raw bytes (not necessarily UTF-8): not
 * empty, not `.` or `..`, no `/` or NUL, at most 255 bytes.
 */
import { displayBytes, utf8 } from '../common/encoding.js';
import { CastoreError } from './errors.js';

export const MAX_NAME_LENGTH = 255;

/** A name that passed `parsePathComponent`. */
export type PathComponent = Uint8Array & { readonly __pathComponent: true };

/** Checks in the reference order: empty, `..`, `.`, too long, NUL, slash. */
export function parsePathComponent(name: Uint8Array | string): PathComponent {
  const bytes = typeof name === 'string' ? utf8(name) : name;
  const problem = pathComponentProblem(bytes);
  if (problem) {
    throw new CastoreError('INVALID_NAME', `invalid name ${JSON.stringify(displayBytes(bytes))}: ${problem}`, {
      details: { name: bytes },
    });
  }
  return bytes as PathComponent;
}

function pathComponentProblem(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength === 0) return 'empty';
  if (bytes.byteLength === 2 && bytes[0] === 0x2e && bytes[1] === 0x2e) return 'is ".."';
  if (bytes.byteLength === 1 && bytes[0] === 0x2e) return 'is "."';
  if (bytes.byteLength > MAX_NAME_LENGTH) return `longer than ${MAX_NAME_LENGTH} bytes (${bytes.byteLength})`;
  if (bytes.includes(0)) return 'contains NUL';
  if (bytes.includes(0x2f)) return 'contains "/"';
  return undefined;
}
