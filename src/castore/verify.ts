/**
 * Full verification of the embedded store: re-hash every blob and every
 * directory, and check that every reference inside a directory resolves.
 */
import type { AbortOptions } from '../common/abort.js';
import { isAbortReason } from '../common/coded-error.js';
import type { B3Digest } from './b3-digest.js';
import { decodeStored } from './directory-service/fs.js';
import { isCastoreError } from './errors.js';
import type { FsCastore } from './fs-store.js';

export interface StoreProblem {
  readonly kind: 'corrupt-blob' | 'corrupt-directory' | 'missing-blob' | 'missing-directory';
  readonly digest: string;
  readonly detail: string;
}

export interface VerifyReport {
  readonly blobs: number;
  readonly blobBytes: number;
  readonly directories: number;
  readonly problems: readonly StoreProblem[];
}

export interface VerifyOptions extends AbortOptions {
  onProgress?: (progress: { blobs: number; blobBytes: number; directories: number }) => void;
}

export async function verifyFsCastore(store: FsCastore, options: VerifyOptions = {}): Promise<VerifyReport> {
  const { signal } = options;
  const problems: StoreProblem[] = [];
  const goodBlobs = new Set<string>();
  let blobs = 0;
  let blobBytes = 0;
  let directories = 0;
  const progress = () => options.onProgress?.({ blobs, blobBytes, directories });
  for await (const digest of store.blobService.list()) {
    signal?.throwIfAborted();
    blobs++;
    try {
      const stream = await store.blobService.read(digest, { signal });
      for await (const chunk of stream ?? []) blobBytes += chunk.byteLength;
      goodBlobs.add(digest.toHex());
    } catch (error) {
      if (isAbortReason(error, signal)) throw error;
      problems.push({ kind: 'corrupt-blob', digest: digest.toString(), detail: (error as Error).message });
    }
    progress();
  }
  const goodDirectories = new Set<string>();
  const references: { from: B3Digest; kind: 'missing-blob' | 'missing-directory'; digest: B3Digest }[] = [];
  for (const { digest, bytes } of store.directoryService.listRaw()) {
    signal?.throwIfAborted();
    directories++;
    try {
      const directory = decodeStored(digest, bytes);
      goodDirectories.add(digest.toHex());
      for (const { node } of directory.entries) {
        if (node.type === 'directory') references.push({ from: digest, kind: 'missing-directory', digest: node.digest });
        else if (node.type === 'file') references.push({ from: digest, kind: 'missing-blob', digest: node.digest });
      }
    } catch (error) {
      if (!isCastoreError(error, 'INTEGRITY_MISMATCH')) throw error;
      problems.push({ kind: 'corrupt-directory', digest: digest.toString(), detail: (error as Error).message });
    }
    progress();
  }
  const reported = new Set<string>();
  for (const ref of references) {
    const key = ref.digest.toHex();
    const present = ref.kind === 'missing-blob' ? goodBlobs.has(key) : goodDirectories.has(key);
    if (present || reported.has(key)) continue;
    reported.add(key);
    const alreadyCorrupt = problems.some((p) => p.digest === ref.digest.toString());
    if (!alreadyCorrupt) problems.push({ kind: ref.kind, digest: ref.digest.toString(), detail: `referenced from directory ${ref.from}` });
  }
  return { blobs, blobBytes, directories, problems };
}
