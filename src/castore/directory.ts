/**
 * A validated castore Directory: names unique across directories, files and
 * symlinks, ordered by their raw bytes. Its digest is BLAKE3 over the
 * canonical protobuf encoding produced by `encode()` (the one place that
 * encoding is defined). Depends only on common/ and sibling domain files.
 */
import { compareBytes, displayBytes } from '../common/encoding.js';
import { B3Digest } from './b3-digest.js';
import { CastoreError } from './errors.js';
import type { Node } from './node.js';
import type { PathComponent } from './path-component.js';

/** A named child of a directory. */
export interface DirectoryEntry {
  readonly name: PathComponent;
  readonly node: Node;
}

export class Directory {
  /** Entries sorted by name bytes; names are unique. */
  readonly entries: readonly DirectoryEntry[];
  /** Entries + the sizes of every child directory (the documented formula). */
  readonly size: number;
  #digest: B3Digest | undefined;

  private constructor(entries: readonly DirectoryEntry[], size: number) {
    this.entries = entries;
    this.size = size;
  }

  /** Builds a directory from entries in any order; rejects duplicate names. */
  static fromEntries(entries: Iterable<DirectoryEntry>): Directory {
    const sorted = [...entries].sort((a, b) => compareBytes(a.name, b.name));
    let size = sorted.length;
    for (let i = 0; i < sorted.length; i++) {
      const entry = sorted[i] as DirectoryEntry;
      if (i > 0 && compareBytes((sorted[i - 1] as DirectoryEntry).name, entry.name) === 0) {
        throw new CastoreError('INVALID_DIRECTORY', `${JSON.stringify(displayBytes(entry.name))} is a duplicate name`, {
          details: { name: entry.name },
        });
      }
      if (entry.node.type === 'directory') size += entry.node.size;
    }
    if (!Number.isSafeInteger(size)) throw new CastoreError('INVALID_DIRECTORY', 'directory size overflows');
    return new Directory(sorted, size);
  }

  static readonly EMPTY: Directory = new Directory([], 0);

  /** The entry called `name`, or undefined. */
  get(name: Uint8Array | string): Node | undefined {
    const key = typeof name === 'string' ? Buffer.from(name) : name;
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const entry = this.entries[mid] as DirectoryEntry;
      const order = compareBytes(entry.name, key);
      if (order === 0) return entry.node;
      if (order < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** Digests of the child directories, in entry order (may repeat). */
  childDirectoryDigests(): B3Digest[] {
    const out: B3Digest[] = [];
    for (const { node } of this.entries) if (node.type === 'directory') out.push(node.digest);
    return out;
  }

  get digest(): B3Digest {
    this.#digest ??= B3Digest.of(this.encode());
    return this.#digest;
  }

  /**
   * The canonical `snix.castore.v1.Directory` encoding: all directories
   * (field 1), then files (2), then symlinks (3); each entry's fields in
   * number order with proto3 defaults omitted; never any unknown field.
   */
  encode(): Uint8Array {
    const bodies: number[] = new Array(this.entries.length);
    let total = 0;
    this.entries.forEach(({ name, node }, i) => {
      let body = bytesFieldLength(name.byteLength);
      if (node.type === 'symlink') body += bytesFieldLength(node.target.byteLength);
      else {
        body += bytesFieldLength(32);
        if (node.size !== 0) body += 1 + varintLength(node.size);
        if (node.type === 'file' && node.executable) body += 2;
      }
      bodies[i] = body;
      total += 1 + varintLength(body) + body;
    });
    const out = Buffer.allocUnsafe(total);
    let pos = 0;
    const varint = (value: number) => {
      let v = value;
      while (v >= 0x80) {
        out[pos++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      out[pos++] = v;
    };
    const bytes = (tag: number, value: Uint8Array) => {
      out[pos++] = tag;
      varint(value.byteLength);
      out.set(value, pos);
      pos += value.byteLength;
    };
    for (const [kind, tag] of [
      ['directory', 0x0a],
      ['file', 0x12],
      ['symlink', 0x1a],
    ] as const) {
      this.entries.forEach(({ name, node }, i) => {
        if (node.type !== kind) return;
        out[pos++] = tag;
        varint(bodies[i] as number);
        if (name.byteLength > 0) bytes(0x0a, name);
        if (node.type === 'symlink') {
          if (node.target.byteLength > 0) bytes(0x12, node.target);
          return;
        }
        bytes(0x12, node.digest.bytes);
        if (node.size !== 0) {
          out[pos++] = 0x18;
          varint(node.size);
        }
        if (node.type === 'file' && node.executable) {
          out[pos++] = 0x20;
          out[pos++] = 1;
        }
      });
    }
    return out;
  }
}

function varintLength(value: number): number {
  let length = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) length++;
  return length;
}

/** Tag + length prefix + bytes of a non-empty length-delimited field (0 when empty: omitted). */
function bytesFieldLength(length: number): number {
  return length === 0 ? 0 : 1 + varintLength(length) + length;
}
