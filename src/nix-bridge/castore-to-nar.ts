/**
 * Castore → NAR: a castore node as the abstract tree the NAR writer walks,
 * so a store path's NAR streams straight from the castore (directories
 * fetched as the writer reaches them, large files read chunk by chunk,
 * small ones whole and a few ahead; never a whole tree in memory). `narOfNode` hashes that stream
 * and scans it for reference needles the way Nix does: over the NAR bytes,
 * so names count as well as contents and symlink targets.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  B3Digest,
  type BlobService,
  CastoreError,
  type DirectoryEntry,
  type DirectoryService,
  type FileNode,
  hasLocalBlobFiles,
  type Node,
  ReferenceScanner,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { concatBytes } from '../common/async-iterable.js';
import { createBlake3 } from '../common/blake3.js';
import { createOffThreadHash, type OffThreadHash } from '../common/off-thread-hash.js';
import { createNixHasher, type HashAlgorithm, type NarSourceNode, type NixHash, writeNar } from '../nix/index.js';

/** How a NAR is read from the castore. */
export interface NarSourceOptions extends AbortOptions {
  /**
   * Read local blob files into this one buffer (or the one this function
   * gives for each read), synchronously, a chunk at a time: each chunk
   * yielded is valid only until the next one is pulled. For
   * a consumer that hashes each chunk and forgets it (no allocation per
   * chunk, no garbage, no thread-pool round trips); each read blocks the
   * event loop for at most one buffer's worth.
   */
  readonly readBuffer?: Uint8Array | (() => Uint8Array);
}

/** What reading a castore tree needs. */
export interface CastoreReader {
  readonly blobService: Pick<BlobService, 'read'>;
  readonly directoryService: Pick<DirectoryService, 'get'>;
}

/** Files up to this size are read whole (and verified) rather than streamed. */
export const NAR_SMALL_FILE_SIZE = 1 << 20;
/** Small files of a directory read ahead of the NAR writer (at most this many × NAR_SMALL_FILE_SIZE in memory per directory level). */
export const NAR_READ_AHEAD_FILES = 16;

/** The error for a blob whose bytes do not hash to its digest. */
function corrupt(node: FileNode, actual: B3Digest): CastoreError {
  return new CastoreError('INTEGRITY_MISMATCH', `blob ${node.digest} is corrupt: its bytes hash to ${actual}`, {
    details: { digest: node.digest.toString(), actual: actual.toString() },
  });
}

/** A small blob whole: from its local file when the store has one (one read, BLAKE3 checked here), else through `read`. */
async function readSmallBlob(node: FileNode, castore: CastoreReader, options: AbortOptions): Promise<Uint8Array> {
  const service = castore.blobService as BlobService;
  const notFound = () => new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
  if (hasLocalBlobFiles(service)) {
    options.signal?.throwIfAborted();
    const path = await service.localBlobPath(node.digest);
    if (!path) throw notFound();
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw notFound();
      throw error;
    }
    const actual = B3Digest.of(data);
    if (!actual.equals(node.digest)) throw corrupt(node, actual);
    return data;
  }
  const data = await service.read(node.digest, options);
  if (!data) throw notFound();
  return concatBytes(data);
}

/**
 * A large blob from its local file, 1 MiB at a time with the next read
 * already in flight while the caller hashes the current chunk; the BLAKE3
 * digest is checked after the last chunk (INTEGRITY_MISMATCH), as the
 * store's own `read` does.
 */
async function* readLargeBlobFile(path: string, node: FileNode, options: AbortOptions): AsyncGenerator<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const hasher = createBlake3();
    const readChunk = async () => {
      const buffer = Buffer.allocUnsafe(NAR_SMALL_FILE_SIZE);
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
      return buffer.subarray(0, bytesRead);
    };
    let pending = readChunk();
    for (;;) {
      const chunk = await pending;
      if (chunk.byteLength === 0) break;
      options.signal?.throwIfAborted();
      pending = readChunk();
      hasher.update(chunk);
      yield chunk;
    }
    const actual = B3Digest.fromBytes(hasher.digest());
    if (!actual.equals(node.digest)) throw corrupt(node, actual);
  } finally {
    await handle.close();
  }
}

/** A local blob file read into `buffer` chunk by chunk (see `NarSourceOptions.readBuffer`), BLAKE3 checked after the last chunk. */
function* readBlobFileInto(
  path: string,
  node: FileNode,
  readBuffer: Uint8Array | (() => Uint8Array),
  options: AbortOptions,
): Generator<Uint8Array> {
  const fd = openSync(path, 'r');
  try {
    const hasher = createBlake3();
    for (;;) {
      options.signal?.throwIfAborted();
      const buffer = typeof readBuffer === 'function' ? readBuffer() : readBuffer;
      const bytesRead = readSync(fd, buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      hasher.update(chunk);
      yield chunk;
    }
    const actual = B3Digest.fromBytes(hasher.digest());
    if (!actual.equals(node.digest)) throw corrupt(node, actual);
  } finally {
    closeSync(fd);
  }
}

/**
 * The tree under `node` as the NAR writer's source; missing objects fail
 * with castore `NOT_FOUND` when reached. Small files of a directory are
 * read ahead (`NAR_READ_AHEAD_FILES`), since reading many small files one
 * after the other is bound by latency, not bandwidth.
 */
export function castoreNarSource(
  node: Node,
  castore: CastoreReader,
  options: NarSourceOptions = {},
  prefetched?: Promise<Uint8Array>,
): NarSourceNode {
  switch (node.type) {
    case 'symlink':
      return { type: 'symlink', target: node.target };
    case 'file':
      return {
        type: 'regular',
        executable: node.executable,
        size: node.size,
        contents: async () => {
          if (prefetched) return prefetched;
          const service = castore.blobService as BlobService;
          if (options.readBuffer && hasLocalBlobFiles(service)) {
            const path = await service.localBlobPath(node.digest);
            if (!path)
              throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
            return readBlobFileInto(path, node, options.readBuffer, options);
          }
          if (node.size <= NAR_SMALL_FILE_SIZE) return readSmallBlob(node, castore, options);
          const path = hasLocalBlobFiles(service) ? await service.localBlobPath(node.digest) : undefined;
          if (path) return readLargeBlobFile(path, node, options);
          const data = await castore.blobService.read(node.digest, options);
          if (!data) throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
          return data;
        },
      };
    case 'directory':
      return {
        type: 'directory',
        entries: (async function* () {
          const directory = await castore.directoryService.get(node.digest, options);
          if (!directory) {
            throw new CastoreError('NOT_FOUND', `directory ${node.digest} not found`, { details: { digest: node.digest.toString() } });
          }
          const entries = directory.entries;
          const ahead = new Map<number, Promise<Uint8Array>>();
          // Reads into one buffer happen when the writer gets there, never ahead.
          let next = options.readBuffer ? entries.length : 0;
          for (let i = 0; i < entries.length; i++) {
            for (; next < entries.length && next < i + NAR_READ_AHEAD_FILES; next++) {
              const child = (entries[next] as DirectoryEntry).node;
              if (child.type !== 'file' || child.size > NAR_SMALL_FILE_SIZE) continue;
              const read = readSmallBlob(child, castore, options);
              read.catch(() => {}); // surfaces when the writer reaches the file
              ahead.set(next, read);
            }
            const entry = entries[i] as DirectoryEntry;
            const read = ahead.get(i);
            ahead.delete(i);
            yield { name: entry.name, node: castoreNarSource(entry.node, castore, options, read) };
          }
        })(),
      };
  }
}

/** The NAR of a node streamed from the castore. */
export function narOfNode(node: Node, castore: CastoreReader, options: NarSourceOptions = {}): AsyncGenerator<Uint8Array> {
  return writeNar(castoreNarSource(node, castore, options), options);
}

export interface NarDigestOptions extends AbortOptions {
  /** Byte strings to look for in the NAR; `found` says which occur. */
  needles?: readonly Uint8Array[];
  /** Also hash the NAR with this algorithm (for fixed outputs hashed `r:<algo>`). */
  extraAlgo?: HashAlgorithm;
}

export interface NodeNarDigest {
  /** sha256 of the NAR. */
  readonly narHash: NixHash;
  readonly narSize: number;
  /** One flag per needle, in needle order. */
  readonly found: readonly boolean[];
  /** The NAR hashed with `extraAlgo`, when asked. */
  readonly extraHash?: NixHash;
}

/**
 * NARs up to this many bytes are hashed on the calling thread; beyond it
 * the hashing moves to the hash worker, where it runs beside the reading
 * and BLAKE3 checks (for a small NAR the hand-off would cost more).
 */
export const NAR_OFF_THREAD_BYTES = 4 * 2 ** 20;

/** A buffer gathering NAR bytes for the hash worker moves there once it has less room than this left. */
const NAR_GATHER_MIN_ROOM = 64 * 2 ** 10;

/** The buffer local blob files are read into while hashing a NAR. */
const NAR_READ_BUFFER_BYTES = 1 << 20;

/**
 * Hashes (and scans) the NAR of `node` in one pass over the castore,
 * reading local blob files into one reused buffer. The first
 * `NAR_OFF_THREAD_BYTES` are kept (copied); a NAR that ends within them
 * is hashed here, a longer one on the hash worker.
 */
export async function narDigestOfNode(node: Node, castore: CastoreReader, options: NarDigestOptions = {}): Promise<NodeNarDigest> {
  const algos: HashAlgorithm[] = ['sha256', ...(options.extraAlgo ? [options.extraAlgo] : [])];
  const needles = options.needles ?? [];
  const scanner = needles.length > 0 ? new ReferenceScanner(needles) : undefined;
  const stream = scanner?.createStream();
  const early: Uint8Array[] = [];
  let offThread: OffThreadHash | undefined;
  let narSize = 0;
  // Once the hash runs on the worker, the NAR is gathered in one of its buffers at a time: blob files are read
  // straight into it, one after the other, the NAR's own framing is copied in between, and the buffer moves to the
  // worker once nearly full (few messages, no copy of file contents). Only while every buffer is at the worker do
  // reads go to `ownBuffer` and bytes through the worker's ring.
  let gathering: Uint8Array | undefined;
  let filled = 0;
  const handOver = () => {
    if (gathering && filled > 0) offThread?.updateInPlace(gathering.subarray(0, filled));
    gathering = undefined;
    filled = 0;
  };
  const room = (): Uint8Array | undefined => {
    if (!offThread) return undefined;
    if (gathering && gathering.byteLength - filled >= NAR_GATHER_MIN_ROOM) return gathering.subarray(filled);
    handOver();
    gathering = offThread.freeBuffer();
    return gathering;
  };
  try {
    const ownBuffer = Buffer.allocUnsafeSlow(NAR_READ_BUFFER_BYTES);
    const readBuffer = () => room() ?? ownBuffer;
    for await (const chunk of narOfNode(node, castore, { ...options, readBuffer })) {
      stream?.update(chunk);
      narSize += chunk.byteLength;
      if (!offThread) {
        early.push(new Uint8Array(chunk)); // a copy: the chunk may be overwritten
        if (narSize <= NAR_OFF_THREAD_BYTES) continue;
        offThread = createOffThreadHash(algos);
        for (const kept of early.splice(0)) await offThread.update(kept);
        continue;
      }
      if (gathering && chunk.buffer === gathering.buffer && chunk.byteOffset === gathering.byteOffset + filled) {
        filled += chunk.byteLength; // read in place
      } else if (gathering && gathering.byteLength - filled >= chunk.byteLength) {
        gathering.set(chunk, filled);
        filled += chunk.byteLength;
      } else {
        handOver();
        const wait = offThread.update(chunk);
        if (wait) await wait;
        continue;
      }
      if (gathering.byteLength - filled >= NAR_GATHER_MIN_ROOM) continue;
      handOver();
      // The worker hashes slower than blob files are read: waiting for a buffer costs less than copying into the ring.
      const free = offThread.bufferFree();
      if (free) await free;
    }
    handOver();
  } catch (error) {
    offThread?.abort();
    throw error;
  }
  let digests: Uint8Array[];
  if (offThread) {
    digests = await offThread.digest();
  } else {
    const hashers = algos.map((algo) => createNixHasher(algo));
    for (const chunk of early) for (const hasher of hashers) hasher.update(chunk);
    digests = hashers.map((hasher) => hasher.digest().digest);
  }
  const [narHash, extraHash] = algos.map((algo, index) => ({ algo, digest: digests[index] as Uint8Array }));
  return {
    narHash: narHash as NixHash,
    narSize,
    found: scanner ? scanner.matches() : [],
    ...(extraHash ? { extraHash } : {}),
  };
}

/** Hashes a file node's contents (a flat or text content address). */
export async function hashFileNode(
  node: Extract<Node, { type: 'file' }>,
  castore: CastoreReader,
  algo: HashAlgorithm,
  options: AbortOptions = {},
): Promise<NixHash> {
  const hasher = createNixHasher(algo);
  const data = await castore.blobService.read(node.digest, options);
  if (!data) throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
  for await (const chunk of data) hasher.update(chunk);
  return hasher.digest();
}

/**
 * Makes the contents of `nodes` durable before path infos pointing at them
 * are committed. A directory's blobs are durable once the castore holds the
 * directory (the disk store syncs blobs before each directory commit); a
 * file standing alone as a root was only written, so its blob file and the
 * directory holding it are fsynced — far cheaper than syncing the whole
 * filesystem after every build. Stores without local blob files are left to
 * their own durability.
 */
export async function makeRootsDurable(nodes: Iterable<Node>, blobService: Pick<BlobService, 'read'>): Promise<void> {
  const service = blobService as BlobService;
  if (!hasLocalBlobFiles(service)) return;
  const dirs = new Set<string>();
  for (const node of nodes) {
    if (node.type !== 'file') continue;
    const path = await service.localBlobPath(node.digest);
    if (!path) throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
    await fsyncPath(path);
    dirs.add(dirname(path));
  }
  for (const dir of dirs) await fsyncPath(dir);
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
