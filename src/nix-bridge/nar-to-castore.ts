/**
 * NAR → castore: reads and validates a NAR stream and stores its tree in
 * the castore (file contents streamed into blobs, directories committed
 * as one closure at the end), returning the root node with the NAR's hash
 * and size. The inverse of `narOfNode`: the NAR of the returned node is the
 * input, byte for byte.
 */
import {
  type BlobService,
  Directory,
  type DirectoryEntry,
  type DirectoryService,
  directoryNode,
  fileNode,
  type Node,
  parsePathComponent,
  symlinkNode,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import type { ByteSource } from '../common/async-iterable.js';
import { type NarDigest, NarReader } from '../nix/index.js';

export interface NarToCastoreOptions extends AbortOptions {
  blobService: Pick<BlobService, 'put'>;
  directoryService: Pick<DirectoryService, 'putMany'>;
}

export async function narToCastore(source: ByteSource, options: NarToCastoreOptions): Promise<NarDigest & { node: Node }> {
  const reader = new NarReader(source, options);
  const stack: DirectoryEntry[][] = [];
  const closure: Directory[] = [];
  let root: Node | undefined;
  const place = (path: readonly Uint8Array[], node: Node) => {
    if (path.length === 0) root = node;
    else (stack.at(-1) as DirectoryEntry[]).push({ name: parsePathComponent(path.at(-1) as Uint8Array), node });
  };
  for await (const event of reader) {
    switch (event.type) {
      case 'directory':
        stack.push([]);
        break;
      case 'directory-end': {
        const directory = Directory.fromEntries(stack.pop() as DirectoryEntry[]);
        closure.push(directory);
        place(event.path, directoryNode(directory.digest, directory.size));
        break;
      }
      case 'regular': {
        const { digest, size } = await options.blobService.put(event.contents, options);
        place(event.path, fileNode(digest, size, event.executable));
        break;
      }
      case 'symlink':
        place(event.path, symlinkNode(event.target));
        break;
    }
  }
  if (closure.length > 0) await options.directoryService.putMany(closure, options);
  return { node: root as Node, ...reader.digest };
}
