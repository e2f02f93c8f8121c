/**
 * Validates a directory closure that arrives leaves first, before any of it
 * is stored: every child reference resolves (to an earlier directory of the
 * closure or to one the store already holds) with the right size, and every
 * directory is reachable from the root, which is the last one.
 */
import type { AbortOptions } from '../../common/abort.js';
import { displayBytes } from '../../common/encoding.js';
import type { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';
import { CastoreError } from '../errors.js';

/** Size of an already stored directory, or undefined when it is absent. */
export type StoredDirectorySize = (digest: B3Digest) => Promise<number | undefined>;

export interface ValidatedClosure {
  readonly root: Directory;
  /** The new directories, leaves first, each once. */
  readonly directories: readonly Directory[];
}

export async function validateClosure(
  source: AsyncIterable<Directory> | Iterable<Directory>,
  storedSize: StoredDirectorySize,
  options: AbortOptions = {},
): Promise<ValidatedClosure> {
  const { signal } = options;
  signal?.throwIfAborted();
  const received = new Map<string, Directory>();
  const order: Directory[] = [];
  const storedSizes = new Map<string, number>();
  let last: Directory | undefined;
  for await (const directory of source) {
    signal?.throwIfAborted();
    const key = directory.digest.toHex();
    last = directory;
    if (received.has(key)) continue;
    for (const { name, node } of directory.entries) {
      if (node.type !== 'directory') continue;
      const childKey = node.digest.toHex();
      let actual = received.get(childKey)?.size ?? storedSizes.get(childKey);
      if (actual === undefined) {
        actual = await storedSize(node.digest);
        if (actual !== undefined) storedSizes.set(childKey, actual);
      }
      if (actual === undefined) {
        throw new CastoreError(
          'INVALID_DIRECTORY',
          `directory ${directory.digest} references unknown directory ${node.digest} as ${JSON.stringify(displayBytes(name))}`,
          { details: { digest: directory.digest.toString(), missing: node.digest.toString() } },
        );
      }
      if (actual !== node.size) {
        throw new CastoreError(
          'INVALID_DIRECTORY',
          `${JSON.stringify(displayBytes(name))} in directory ${directory.digest} has wrong size, specified ${node.size}, recorded ${actual}`,
          { details: { digest: directory.digest.toString(), child: node.digest.toString() } },
        );
      }
    }
    received.set(key, directory);
    order.push(directory);
  }
  if (!last) throw new CastoreError('INVALID_DIRECTORY', 'empty directory closure: no root');
  const reachable = new Set<string>([last.digest.toHex()]);
  const queue: Directory[] = [last];
  while (queue.length > 0) {
    for (const child of (queue.pop() as Directory).childDirectoryDigests()) {
      const childKey = child.toHex();
      const childDirectory = received.get(childKey);
      if (childDirectory && !reachable.has(childKey)) {
        reachable.add(childKey);
        queue.push(childDirectory);
      }
    }
  }
  for (const directory of order) {
    if (!reachable.has(directory.digest.toHex())) {
      throw new CastoreError('INVALID_DIRECTORY', `directory ${directory.digest} is not connected to the root ${last.digest}`, {
        details: { digest: directory.digest.toString(), root: last.digest.toString() },
      });
    }
  }
  return { root: last, directories: order };
}
