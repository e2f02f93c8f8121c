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
    const writer = new ProtoWriter();
    for (const kind of ['directory', 'file', 'symlink'] as const) {
      for (const { name, node } of this.entries) {
        if (node.type !== kind) continue;
        const body = new ProtoWriter();
        body.bytes(1, name);
        if (node.type === 'symlink') {
          body.bytes(2, node.target);
        } else {
          body.bytes(2, node.digest.bytes);
          body.uint(3, node.size);
          if (node.type === 'file' && node.executable) body.uint(4, 1);
        }
        writer.bytes(kind === 'directory' ? 1 : kind === 'file' ? 2 : 3, body.finish(), true);
      }
    }
    return writer.finish();
  }
}

/** Minimal protobuf writer for the canonical encoding (length-delimited and varint fields only). */
class ProtoWriter {
  #parts: Uint8Array[] = [];
  #length = 0;

  #push(part: Uint8Array): void {
    this.#parts.push(part);
    this.#length += part.byteLength;
  }

  #varint(value: number): void {
    const out: number[] = [];
    let v = value;
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
    this.#push(Uint8Array.from(out));
  }

  /** A length-delimited field; empty values are omitted unless `always`. */
  bytes(field: number, value: Uint8Array, always = false): void {
    if (value.byteLength === 0 && !always) return;
    this.#varint((field << 3) | 2);
    this.#varint(value.byteLength);
    this.#push(value);
  }

  /** A varint field; zero is omitted. */
  uint(field: number, value: number): void {
    if (value === 0) return;
    this.#varint(field << 3);
    this.#varint(value);
  }

  finish(): Uint8Array {
    if (this.#parts.length === 1) return this.#parts[0] as Uint8Array;
    return Buffer.concat(this.#parts, this.#length);
  }
}
