/**
 * Copying the closure of nodes from one castore to another: every directory
 * and blob the nodes reach, asking the target first and sending only what it
 * lacks. A directory the target already has is taken as complete (directory
 * services accept only whole closures), so its subtree is not walked again.
 * Used to upload a build's inputs to a remote builder and to fetch a remote
 * build's outputs into the local store.
 */
import type { AbortOptions } from '../common/abort.js';
import { mapConcurrent } from '../common/async-iterable.js';
import type { B3Digest } from './b3-digest.js';
import type { BlobService } from './blob-service/blob-service.js';
import type { Directory } from './directory.js';
import type { DirectoryService } from './directory-service/directory-service.js';
import { CastoreError } from './errors.js';
import type { Node } from './node.js';

/** How many existence checks or blob copies run at once. */
const CONCURRENCY = 16;

/** Both services of a store. */
export interface CastoreServices {
  readonly blobService: BlobService;
  readonly directoryService: DirectoryService;
}

export interface CopySummary {
  blobsSent: number;
  bytesSent: number;
  directoriesSent: number;
}

/**
 * Copies what `to` lacks of the closure of `nodes` from `from`: blobs first
 * (each checked with `has`), then the directory closure of each root `to`
 * lacks, leaves first. Fails with `NOT_FOUND` (`details.missing` lists the
 * digests) when `from` lacks part of it: a directory before anything is
 * sent, a blob when its turn comes. Nothing of a directory closure is sent
 * before all its blobs are there.
 */
export async function copyClosure(
  nodes: readonly Node[],
  from: CastoreServices,
  to: CastoreServices,
  options: AbortOptions = {},
): Promise<CopySummary> {
  const summary: CopySummary = { blobsSent: 0, bytesSent: 0, directoriesSent: 0 };
  const roots = new Map<string, Node & { type: 'directory' }>();
  const blobs = new Map<string, { digest: B3Digest; size: number }>();
  const addFile = (node: Node) => {
    if (node.type === 'file') blobs.set(node.digest.toHex(), { digest: node.digest, size: node.size });
  };
  for (const node of nodes) {
    if (node.type === 'directory') roots.set(node.digest.toHex(), node);
    addFile(node);
  }
  // The directory closures to send, each root's leaves first.
  const closures: Directory[][] = [];
  const missing: string[] = [];
  const seen = new Set<string>();
  for (const root of roots.values()) {
    if (await to.directoryService.get(root.digest, options)) continue;
    const closure: Directory[] = [];
    const inClosure = new Set<string>();
    try {
      for await (const directory of from.directoryService.getRecursive(root.digest, options)) {
        const hex = directory.digest.toHex();
        if (inClosure.has(hex)) continue;
        inClosure.add(hex);
        closure.push(directory);
        if (seen.has(hex)) continue;
        seen.add(hex);
        for (const entry of directory.entries) addFile(entry.node);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== 'NOT_FOUND') throw error;
    }
    if (closure.length === 0) missing.push(root.digest.toString());
    else closures.push(closure.reverse());
  }
  if (missing.length > 0)
    throw new CastoreError('NOT_FOUND', `the source store lacks directories ${missing.join(', ')}`, { details: { missing } });
  const copies = mapConcurrent(blobs.values(), CONCURRENCY, async ({ digest, size }) => {
    if (await to.blobService.has(digest, options)) return;
    const data = await from.blobService.read(digest, options);
    if (!data) throw new CastoreError('NOT_FOUND', `the source store lacks blob ${digest}`, { details: { missing: [digest.toString()] } });
    // No expectedDigest: the put would hash every byte a second time. Every read is
    // verified, failing before its end on a mismatch, which cuts the put off
    // before it completes, so the target never stores bytes that are not the blob.
    const stored = await to.blobService.put(data, options);
    if (!stored.digest.equals(digest))
      throw new CastoreError('INTEGRITY_MISMATCH', `copying blob ${digest}: the target stored it as ${stored.digest}`, {
        details: { digest: digest.toString(), actual: stored.digest.toString() },
      });
    summary.blobsSent++;
    summary.bytesSent += size;
  });
  for await (const _ of copies);
  for (const closure of closures) {
    await to.directoryService.putMany(closure, options);
    summary.directoriesSent += closure.length;
  }
  return summary;
}
