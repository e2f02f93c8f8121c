/**
 * NAR, the Nix ARchive: the canonical serialisation of a file system tree
 * whose sha256 is a store path's `narHash` (reference §6.6).
 *
 * Wire format: every token is a u64 little-endian length, the bytes, and
 * zero padding to a multiple of 8 (the empty string is 8 zero bytes).
 *
 * ```
 * archive := "nix-archive-1" node
 * node    := "(" "type" "regular" ["executable" ""] "contents" <bytes> ")"
 *          | "(" "type" "symlink" "target" <target> ")"
 *          | "(" "type" "directory" entry* ")"
 * entry   := "entry" "(" "name" <name> "node" node ")"
 * ```
 *
 * Rules, enforced by both the writer and the reader (`INVALID_NAR`):
 * - entry names are non-empty, not `.` or `..`, free of `/` and NUL, at most
 *   255 bytes, and strictly ascending by bytes within a directory;
 * - symlink targets are non-empty, free of NUL, at most 4095 bytes;
 * - padding bytes are zero; nothing follows the archive.
 *
 * Both directions stream with bounded memory: file contents pass through
 * in the chunks the source provides, never buffered whole.
 *
 * - Writing (`nar-writer.ts`): the tree is described by `NarSourceNode`s,
 *   an abstract walker that the caller implements over any storage (a
 *   castore directory closure, a file system). Directory entries may be an
 *   async iterable produced on demand; file contents are fetched only when
 *   the writer reaches the file.
 * - Reading (`nar-reader.ts`): a stream of `NarEvent`s, depth-first in
 *   archive order, with each file's contents as an async iterable to be
 *   consumed (or skipped) before asking for the next event.
 */
import type { ByteSource } from '../common/async-iterable.js';
import { displayBytes } from '../common/encoding.js';
import type { NixHash } from './hash.js';

export const NAR_MAGIC = 'nix-archive-1';
export const MAX_NAR_NAME_LENGTH = 255;
export const MAX_NAR_SYMLINK_TARGET_LENGTH = 4095;

/** A node of the tree to archive. */
export type NarSourceNode = NarSourceRegular | NarSourceSymlink | NarSourceDirectory;

export interface NarSourceRegular {
  type: 'regular';
  executable?: boolean;
  /** Exact byte count of `contents`; the NAR states it before the bytes, and the writer checks it. */
  size: number;
  /** The bytes, or a function the writer calls once when it reaches this file (to open files lazily). */
  contents: ByteSource | (() => ByteSource | Promise<ByteSource>);
}

export interface NarSourceSymlink {
  type: 'symlink';
  /** Raw bytes, or a string taken as UTF-8. */
  target: Uint8Array | string;
}

export interface NarSourceDirectory {
  type: 'directory';
  /** Entries in strictly ascending name-byte order; pulled one at a time, each subtree written before the next entry is pulled. */
  entries: Iterable<NarSourceEntry> | AsyncIterable<NarSourceEntry>;
}

export interface NarSourceEntry {
  /** Raw bytes, or a string taken as UTF-8. */
  name: Uint8Array | string;
  node: NarSourceNode;
}

/** The components from the root to a node; `[]` is the root itself. */
export type NarPath = readonly Uint8Array[];

/** What the reader yields, in archive order. */
export type NarEvent = NarDirectoryEvent | NarDirectoryEndEvent | NarRegularEvent | NarSymlinkEvent;

/** A directory starts; its entries follow until the matching `directory-end`. */
export interface NarDirectoryEvent {
  type: 'directory';
  path: NarPath;
}

export interface NarDirectoryEndEvent {
  type: 'directory-end';
  path: NarPath;
}

export interface NarRegularEvent {
  type: 'regular';
  path: NarPath;
  executable: boolean;
  size: number;
  /**
   * The file's bytes, streamed from the archive: iterate at most once, and
   * before asking the reader for its next event (unread bytes are then
   * skipped, and a later read fails). Chunks may be views of the source's
   * chunks: copy them to keep them.
   */
  contents: AsyncIterable<Uint8Array>;
}

export interface NarSymlinkEvent {
  type: 'symlink';
  path: NarPath;
  target: Uint8Array;
}

/** A NAR's sha256 and length: what a store path's narHash and narSize record. */
export interface NarDigest {
  narHash: NixHash;
  narSize: number;
}

/** Why `name` cannot be an entry name, or undefined when it can. */
export function narNameProblem(name: Uint8Array): string | undefined {
  if (name.byteLength === 0) return 'empty';
  if (name.byteLength > MAX_NAR_NAME_LENGTH) return `longer than ${MAX_NAR_NAME_LENGTH} bytes`;
  if (name.byteLength === 1 && name[0] === 0x2e) return 'is "."';
  if (name.byteLength === 2 && name[0] === 0x2e && name[1] === 0x2e) return 'is ".."';
  if (name.includes(0x2f)) return 'contains "/"';
  if (name.includes(0)) return 'contains NUL';
  return undefined;
}

/** Why `target` cannot be a symlink target, or undefined when it can. */
export function narSymlinkTargetProblem(target: Uint8Array): string | undefined {
  if (target.byteLength === 0) return 'empty';
  if (target.byteLength > MAX_NAR_SYMLINK_TARGET_LENGTH) return `longer than ${MAX_NAR_SYMLINK_TARGET_LENGTH} bytes`;
  if (target.includes(0)) return 'contains NUL';
  return undefined;
}

/** `/a/b` for messages (lossy for non-UTF-8 names). */
export function displayNarPath(path: NarPath): string {
  return path.length === 0 ? '/' : path.map((c) => `/${displayBytes(c)}`).join('');
}
