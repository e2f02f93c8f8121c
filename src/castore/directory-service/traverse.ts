/** Breadth-first closure walk shared by the local backends. */
import type { AbortOptions } from '../../common/abort.js';
import type { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';
import { CastoreError } from '../errors.js';

/** Root first, then breadth-first, each directory once; nothing when the root is absent. */
export async function* walkClosure(
  root: B3Digest,
  lookup: (digest: B3Digest) => Promise<Directory | undefined>,
  options: AbortOptions = {},
): AsyncGenerator<Directory> {
  const { signal } = options;
  signal?.throwIfAborted();
  const first = await lookup(root);
  if (!first) return;
  const seen = new Set<string>([root.toHex()]);
  const queue: Directory[] = [first];
  for (let i = 0; i < queue.length; i++) {
    const directory = queue[i] as Directory;
    queue[i] = undefined as unknown as Directory; // let finished entries be collected
    yield directory;
    for (const child of directory.childDirectoryDigests()) {
      const key = child.toHex();
      if (seen.has(key)) continue;
      seen.add(key);
      signal?.throwIfAborted();
      const next = await lookup(child);
      if (!next) {
        throw new CastoreError('NOT_FOUND', `directory ${child} referenced from ${directory.digest} is missing`, {
          details: { digest: child.toString() },
        });
      }
      queue.push(next);
    }
  }
}
