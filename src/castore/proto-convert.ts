/**
 * Conversion between generated `snix.castore.v1` messages and validated
 * domain values. The only castore domain file that imports src/gen; every
 * message received from outside is validated here.
 */
import { create, fromBinary, fromJsonString, toBinary, toJsonString } from '@bufbuild/protobuf';
import { compareBytes, displayBytes } from '../common/encoding.js';
import {
  type DirectoryEntry as DirectoryEntryMessage,
  DirectoryEntrySchema,
  type Directory as DirectoryMessage,
  DirectorySchema,
  type Entry as EntryMessage,
  EntrySchema,
  FileEntrySchema,
  SymlinkEntrySchema,
} from '../gen/snix/castore/v1/castore_pb.js';
import { B3Digest } from './b3-digest.js';
import { Directory, type DirectoryEntry } from './directory.js';
import { CastoreError } from './errors.js';
import { checkSize, directoryNode, fileNode, type Node, symlinkNode } from './node.js';
import { type PathComponent, parsePathComponent } from './path-component.js';

export type { DirectoryMessage, EntryMessage };

/** Validates a received Directory message (per-list order, names, digests, cross-list uniqueness). */
export function directoryFromMessage(message: DirectoryMessage): Directory {
  const entries: DirectoryEntry[] = [];
  checkListOrder(message.directories, 'directories');
  checkListOrder(message.files, 'files');
  checkListOrder(message.symlinks, 'symlinks');
  for (const d of message.directories) {
    entries.push({
      name: parsePathComponent(d.name),
      node: directoryNode(digestFromBytes(d.digest, d.name), checkSize(d.size, 'directory')),
    });
  }
  for (const f of message.files) {
    entries.push({
      name: parsePathComponent(f.name),
      node: fileNode(digestFromBytes(f.digest, f.name), checkSize(f.size, 'file'), f.executable),
    });
  }
  for (const s of message.symlinks) entries.push({ name: parsePathComponent(s.name), node: symlinkNode(s.target) });
  return Directory.fromEntries(entries);
}

function checkListOrder(list: readonly { name: Uint8Array }[], field: string): void {
  for (let i = 1; i < list.length; i++) {
    const order = compareBytes((list[i - 1] as { name: Uint8Array }).name, (list[i] as { name: Uint8Array }).name);
    const name = JSON.stringify(displayBytes((list[i] as { name: Uint8Array }).name));
    if (order === 0) throw new CastoreError('INVALID_DIRECTORY', `${name} is a duplicate name in ${field}`);
    if (order > 0) throw new CastoreError('INVALID_DIRECTORY', `${name} is not sorted in ${field}`);
  }
}

function digestFromBytes(bytes: Uint8Array, name: Uint8Array): B3Digest {
  try {
    return B3Digest.fromBytes(bytes);
  } catch (error) {
    throw new CastoreError('INVALID_DIGEST', `invalid digest length ${bytes.byteLength} for ${JSON.stringify(displayBytes(name))}`, {
      cause: error,
    });
  }
}

export function directoryToMessage(directory: Directory): DirectoryMessage {
  const message = create(DirectorySchema);
  for (const { name, node } of directory.entries) {
    if (node.type === 'directory')
      message.directories.push(create(DirectoryEntrySchema, { name, digest: node.digest.bytes, size: BigInt(node.size) }));
    else if (node.type === 'file')
      message.files.push(
        create(FileEntrySchema, { name, digest: node.digest.bytes, size: BigInt(node.size), executable: node.executable }),
      );
    else message.symlinks.push(create(SymlinkEntrySchema, { name, target: node.target }));
  }
  return message;
}

/** Decodes wire bytes into a validated Directory (unknown fields are dropped, never hashed). */
export function decodeDirectory(bytes: Uint8Array): Directory {
  let message: DirectoryMessage;
  try {
    message = fromBinary(DirectorySchema, bytes);
  } catch (error) {
    throw new CastoreError('INVALID_DIRECTORY', 'malformed directory encoding', { cause: error });
  }
  return directoryFromMessage(message);
}

/** A root node with the name it carries (possibly empty, for anonymous roots). */
export interface NamedNode {
  readonly name: Uint8Array;
  readonly node: Node;
}

export function entryToMessage(name: Uint8Array, node: Node): EntryMessage {
  switch (node.type) {
    case 'directory':
      return create(EntrySchema, {
        entry: { case: 'directory', value: create(DirectoryEntrySchema, { name, digest: node.digest.bytes, size: BigInt(node.size) }) },
      });
    case 'file':
      return create(EntrySchema, {
        entry: {
          case: 'file',
          value: create(FileEntrySchema, { name, digest: node.digest.bytes, size: BigInt(node.size), executable: node.executable }),
        },
      });
    case 'symlink':
      return create(EntrySchema, { entry: { case: 'symlink', value: create(SymlinkEntrySchema, { name, target: node.target }) } });
  }
}

export interface EntryValidationOptions {
  /** The name must be empty (a root node standing alone). */
  anonymous?: boolean;
  /** A valid path component or an empty name are both accepted. */
  allowEmptyName?: boolean;
}

/**
 * Validates an Entry. With `anonymous`, the name must be empty; otherwise it
 * must be a valid path component.
 */
export function entryFromMessage(message: EntryMessage, options: EntryValidationOptions = {}): NamedNode {
  const entry = message.entry;
  if (entry.case === undefined) throw new CastoreError('INVALID_NODE', 'entry has no directory, file or symlink set');
  const name = entry.value.name;
  if (options.anonymous) {
    if (name.byteLength !== 0) throw new CastoreError('INVALID_NAME', `anonymous entry has a name ${JSON.stringify(displayBytes(name))}`);
  } else if (!(options.allowEmptyName && name.byteLength === 0)) {
    parsePathComponent(name);
  }
  switch (entry.case) {
    case 'directory':
      return { name, node: directoryNode(digestFromBytes(entry.value.digest, name), checkSize(entry.value.size, 'directory')) };
    case 'file':
      return {
        name,
        node: fileNode(digestFromBytes(entry.value.digest, name), checkSize(entry.value.size, 'file'), entry.value.executable),
      };
    case 'symlink':
      return { name, node: symlinkNode(entry.value.target) };
  }
}

/** The proto3 JSON form of `snix.castore.v1.Entry` (bytes as base64). */
export function entryToJson(name: Uint8Array, node: Node): string {
  return toJsonString(EntrySchema, entryToMessage(name, node));
}

export function entryFromJson(json: string, options: EntryValidationOptions = {}): NamedNode {
  let message: EntryMessage;
  try {
    message = fromJsonString(EntrySchema, json);
  } catch (error) {
    throw new CastoreError('INVALID_NODE', `invalid entry JSON: ${(error as Error).message}`, { cause: error });
  }
  return entryFromMessage(message, options);
}

/** Re-encodes with protobuf-es; used by tests to pin `Directory.encode` against the generated code. */
export function encodeDirectoryWithProtobufEs(directory: Directory): Uint8Array {
  return toBinary(DirectorySchema, directoryToMessage(directory), { writeUnknownFields: false });
}

export type { DirectoryEntryMessage, PathComponent };
