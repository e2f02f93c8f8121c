/**
 * Filesystem ingestion: walks a tree (children before their parent, the root
 * last as a single component), stores every regular file's bytes in a blob
 * service, several files at a time, and yields ingestion entries for
 * `ingestEntries`. Depends on castore contracts and node:fs only.
 *
 * Mapping (reference §3.2): directories, regular files and symlinks are
 * ingested; symlinks are never followed, not even at the root; a file is
 * executable when its owner-execute bit is set; names and symlink targets are
 * raw bytes (non-UTF-8 names survive). Any other file type is rejected with
 * `CastoreError('INVALID_NODE')` naming the path. Errors of the filesystem
 * itself (a vanished file, a permission problem) are rethrown as Node raised
 * them; they carry `code` and `path`.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import type { AbortOptions } from '../../common/abort.js';
import { mapConcurrent } from '../../common/async-iterable.js';
import { displayBytes } from '../../common/encoding.js';
import { B3Digest } from '../b3-digest.js';
import { type BlobService, hasLocalFileIngest, hasSyncBlobPresence } from '../blob-service/blob-service.js';
import { CastoreError } from '../errors.js';
import type { ReferenceScanner } from '../refscan.js';
import type { FileDigestCache, FileIdentity } from './file-digest-cache.js';
import type { IngestionEntry, StoredFileIngestionEntry } from './ingest-entries.js';

/**
 * Files (and symlinks) processed at once: enough to keep the blob service's
 * writes and, with `io: 'async'`, the libuv thread pool busy (measured: 16–64
 * perform alike on a 20,000-file tree, fewer is slower). Memory stays bounded
 * by concurrency × 2 MiB (a small file whole, or a chunk plus one read ahead).
 */
export const DEFAULT_FILE_IMPORT_CONCURRENCY = 32;

/**
 * Files in flight by default when the blob service stores them by path
 * (`LocalFileIngest`): the main thread holds none of their bytes, and enough
 * must be queued to keep every put worker fed with batches.
 */
export const DEFAULT_PUT_FILE_CONCURRENCY = 512;

/** Files up to this size are read in one piece and put as one buffer; larger ones are streamed. */
export const SMALL_FILE_MAX_SIZE = 1 << 20;

/** Chunk size when streaming large files; one chunk is read ahead while the previous is hashed. */
export const FILE_READ_CHUNK_SIZE = 1 << 20;

/**
 * A file whose ctime or mtime is this close to the moment it was examined is
 * not recorded in the digest cache: a write in the same timestamp tick could
 * otherwise go unnoticed (the "racy clean" problem). Timestamps tick at
 * most every few milliseconds, so the margin is generous.
 */
export const RACY_CLEAN_MARGIN_MS = 100;

/**
 * With `io: 'auto'`, a synchronous filesystem call slower than this is
 * "slow": page-cache hits take microseconds, a cold SSD read a few hundred,
 * network filesystems and spinning disks milliseconds.
 */
export const SLOW_SYNC_IO_MS = 0.5;
/** With `io: 'auto'`, once this share of (at least `SYNC_IO_MIN_SAMPLES`) calls was slow, I/O turns asynchronous for good. */
export const SLOW_SYNC_IO_SHARE = 0.25;
/** Calls observed before `io: 'auto'` may decide to turn asynchronous. */
export const SYNC_IO_MIN_SAMPLES = 32;

/** Cumulative counters passed to `onProgress`. */
export interface ImportProgress {
  /** Regular files finished (stored, or skipped thanks to the digest cache). */
  readonly files: number;
  /** Content bytes of those files, plus bytes streamed so far of large files in progress. */
  readonly bytes: number;
  /** How many of `files` were skipped because the digest cache knew them. */
  readonly cachedFiles: number;
}

export interface WalkFilesystemOptions extends AbortOptions {
  /**
   * Receives the file contents; `has` is asked only to confirm digest-cache
   * hits. A service that can store local files by path (`LocalFileIngest`)
   * is handed small files by path instead, unless a scanner needs their bytes.
   */
  blobService: Pick<BlobService, 'put' | 'has'>;
  /**
   * Scans file contents and symlink targets (not names). With a scanner, a
   * digest-cache hit still saves hashing and storing, but the file is read to
   * be scanned: the cache records digests only, not scan results.
   */
  scanner?: ReferenceScanner;
  /**
   * Remembers digests by file identity (device, inode, size, mtime, ctime in
   * ns). A file whose identity is known and whose blob the service still has
   * is not read (unless a scanner needs its bytes). Files changed less than
   * `RACY_CLEAN_MARGIN_MS` before they were examined are not recorded.
   */
  fileDigestCache?: FileDigestCache;
  /**
   * Files processed in parallel; default `DEFAULT_FILE_IMPORT_CONCURRENCY`,
   * or `DEFAULT_PUT_FILE_CONCURRENCY` when files are stored by path.
   */
  concurrency?: number;
  /** Called as files complete (and as large files stream), with cumulative counts. */
  onProgress?: (progress: ImportProgress) => void;
  /**
   * How small files and file metadata are read. `'auto'` (default): with
   * synchronous system calls, one file per task, for as long as they stay
   * fast (a warm page cache, a local disk); once more than
   * `SLOW_SYNC_IO_SHARE` of them took over `SLOW_SYNC_IO_MS`, the walk
   * switches to `'async'` for good. `'async'`: always through the libuv
   * thread pool, which keeps the event loop free and overlaps slow I/O
   * (network filesystems, cold spinning disks). Large files always stream
   * asynchronously. Why: each thread-pool call costs about 10 µs of
   * main-thread time on a small machine, more than the lstat or read it
   * stands for, so small-file imports run ~1.5× faster synchronously.
   */
  io?: 'auto' | 'async';
}

/**
 * Walks `root` and yields its ingestion entries: children before their
 * parent, `root` itself last with its basename as the only path component.
 * File contents are stored as they are reached, up to `concurrency` at a time,
 * and yielded in walk order. Breaking out early stops the walk; files in
 * flight complete first.
 */
export function walkFilesystem(root: string | Buffer, options: WalkFilesystemOptions): AsyncGenerator<IngestionEntry> {
  const walker = new Walker(options);
  const concurrency = options.concurrency ?? (walker.putsByPath ? DEFAULT_PUT_FILE_CONCURRENCY : DEFAULT_FILE_IMPORT_CONCURRENCY);
  return mapConcurrent(listTree(root, options.signal), concurrency, (item) => walker.toEntry(item));
}

/** The basename of `path` as raw bytes: what `walkFilesystem` names the root. */
export function rootName(path: string | Buffer): Uint8Array {
  if (typeof path === 'string') return Buffer.from(basename(resolve(path)));
  let end = path.byteLength;
  while (end > 1 && path[end - 1] === SLASH) end--;
  const name = path.subarray(path.lastIndexOf(SLASH, end - 1) + 1, end);
  const isDot = name.byteLength === 1 && name[0] === DOT;
  const isDotDot = name.byteLength === 2 && name[0] === DOT && name[1] === DOT;
  if (name.byteLength === 0 || isDot || isDotDot) return Buffer.from(basename(resolve(path.toString())));
  return Buffer.from(name);
}

const SLASH = 0x2f;
const DOT = 0x2e;
const SLASH_BYTES = Buffer.from('/');
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0);

/** One filesystem object found by the walk. */
interface TreeItem {
  readonly kind: 'file' | 'symlink' | 'directory';
  /** Path components from the root's name down. */
  readonly names: readonly Uint8Array[];
  readonly hostPath: Buffer;
}

interface Frame {
  readonly names: readonly Uint8Array[];
  readonly hostPath: Buffer;
  readonly children: fs.Dirent<Buffer>[];
  /** Listings of child directories requested ahead of the walk, by child index. */
  readonly prefetched: Map<number, Promise<fs.Dirent<Buffer>[]>>;
  /** Index of the next child to visit. */
  next: number;
  /** Index of the next child to consider for prefetching. */
  prefetchNext: number;
}

/**
 * Subdirectory listings requested ahead of the walk, per directory: a
 * listing takes a thread-pool round trip, and without read-ahead the walk
 * (and every file slot waiting for new work) would stall on each one.
 */
const DIRECTORY_READ_AHEAD = 8;

/** Post-order walk with an explicit stack (deep trees cost no nested generators). */
async function* listTree(root: string | Buffer, signal?: AbortSignal): AsyncGenerator<TreeItem> {
  signal?.throwIfAborted();
  const hostPath = typeof root === 'string' ? Buffer.from(root) : root;
  const names = [rootName(root)];
  const stat = await fsp.lstat(hostPath);
  const kind = kindOf(stat, hostPath);
  if (kind !== 'directory') {
    yield { kind, names, hostPath };
    return;
  }
  const stack: Frame[] = [newFrame(names, hostPath, await readDirectory(hostPath))];
  try {
    while (stack.length > 0) {
      const frame = stack[stack.length - 1] as Frame;
      if (frame.next === frame.children.length) {
        stack.pop();
        yield { kind: 'directory', names: frame.names, hostPath: frame.hostPath };
        continue;
      }
      const index = frame.next++;
      const dirent = frame.children[index] as fs.Dirent<Buffer>;
      const childPath = Buffer.concat([frame.hostPath, SLASH_BYTES, dirent.name]);
      const childNames = [...frame.names, dirent.name];
      const childKind = kindOf(dirent, childPath);
      if (childKind === 'directory') {
        signal?.throwIfAborted();
        prefetch(frame);
        const listing = frame.prefetched.get(index) ?? readDirectory(childPath);
        frame.prefetched.delete(index);
        stack.push(newFrame(childNames, childPath, await listing));
      } else {
        yield { kind: childKind, names: childNames, hostPath: childPath };
      }
    }
  } finally {
    // Listings requested ahead but never used must not surface as unhandled rejections.
    for (const frame of stack) for (const listing of frame.prefetched.values()) listing.catch(() => {});
  }
}

function newFrame(names: readonly Uint8Array[], hostPath: Buffer, children: fs.Dirent<Buffer>[]): Frame {
  const frame: Frame = { names, hostPath, children, prefetched: new Map(), next: 0, prefetchNext: 0 };
  prefetch(frame);
  return frame;
}

/** Keeps up to DIRECTORY_READ_AHEAD listings of upcoming subdirectories in flight. */
function prefetch(frame: Frame): void {
  while (frame.prefetched.size < DIRECTORY_READ_AHEAD && frame.prefetchNext < frame.children.length) {
    const index = frame.prefetchNext++;
    if (index < frame.next) continue;
    const dirent = frame.children[index] as fs.Dirent<Buffer>;
    if (!dirent.isDirectory()) continue;
    const listing = readDirectory(Buffer.concat([frame.hostPath, SLASH_BYTES, dirent.name]));
    listing.catch(() => {}); // observed when the walk reaches it
    frame.prefetched.set(index, listing);
  }
}

function readDirectory(path: Buffer): Promise<fs.Dirent<Buffer>[]> {
  return fsp.readdir(path, { withFileTypes: true, encoding: 'buffer' });
}

/** What lstat results and directory entries both answer. */
type FileTypeProbe = Pick<
  fs.Stats,
  'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isFIFO' | 'isSocket' | 'isCharacterDevice' | 'isBlockDevice'
>;

function kindOf(stat: FileTypeProbe, path: Buffer): TreeItem['kind'] {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'directory';
  if (stat.isSymbolicLink()) return 'symlink';
  const type = stat.isFIFO()
    ? 'fifo'
    : stat.isSocket()
      ? 'socket'
      : stat.isCharacterDevice() || stat.isBlockDevice()
        ? 'device'
        : 'unknown';
  throw new CastoreError('INVALID_NODE', `unsupported file type (${type}) at ${displayBytes(path)}`, {
    details: { path: Buffer.from(path) },
  });
}

/** Per-walk state: progress counters and the file-to-entry conversion. */
class Walker {
  readonly #options: WalkFilesystemOptions;
  /** Whether small files go to the blob service by path (`LocalFileIngest`). */
  readonly putsByPath: boolean;
  #files = 0;
  #bytes = 0;
  #cachedFiles = 0;
  readonly #io: SyncIoGovernor;
  /** Confirms digest-cache hits: on this thread when the blob service can, else through `has`. */
  readonly #isStored: (digest: B3Digest) => boolean | Promise<boolean>;

  constructor(options: WalkFilesystemOptions) {
    this.#options = options;
    this.#io = new SyncIoGovernor(options.io);
    this.putsByPath = !options.scanner && hasLocalFileIngest(options.blobService);
    const { blobService, signal } = options;
    this.#isStored = hasSyncBlobPresence(blobService) ? blobService.presenceCheck() : (digest) => blobService.has(digest, { signal });
  }

  async toEntry(item: TreeItem): Promise<IngestionEntry> {
    this.#options.signal?.throwIfAborted();
    switch (item.kind) {
      case 'directory':
        return { type: 'directory', path: item.names };
      case 'symlink': {
        const target = await fsp.readlink(item.hostPath, { encoding: 'buffer' });
        this.#options.scanner?.scan(target);
        return { type: 'symlink', path: item.names, target };
      }
      case 'file':
        return this.#fileEntry(item);
    }
  }

  async #fileEntry(item: TreeItem): Promise<StoredFileIngestionEntry> {
    const { blobService, fileDigestCache: cache, scanner, signal } = this.#options;
    const examinedMs = Date.now();
    const stat = this.#io.sync ? this.#io.time(() => fs.lstatSync(item.hostPath, { bigint: true })) : await lstatBigInt(item.hostPath);
    if (kindOf(stat, item.hostPath) !== 'file') throw changedError(item.hostPath);
    const size = Number(stat.size);
    const executable = (stat.mode & 0o100n) !== 0n;
    const identity: FileIdentity = { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs };

    const known = cache?.lookup(identity);
    if (known) {
      const digest = B3Digest.fromBytes(known);
      if (await this.#isStored(digest)) {
        if (scanner && !scanner.complete) await this.#scanOnly(item.hostPath, size);
        this.#fileDone(size, true);
        return { type: 'file', path: item.names, digest, size, executable };
      }
    }

    let result: { digest: B3Digest; size: number };
    if (this.putsByPath && size <= SMALL_FILE_MAX_SIZE && hasLocalFileIngest(blobService)) {
      result = await blobService.putFile(item.hostPath, { sizeHint: size, signal });
      if (cache && result.size === size && isRacyClean(stat, examinedMs)) cache.record(identity, result.digest.bytes);
      this.#fileDone(result.size, false);
      return { type: 'file', path: item.names, digest: result.digest, size: result.size, executable };
    }
    const data = await this.#readSmall(item.hostPath, size);
    if (data) {
      scanner?.scan(data);
      result = await blobService.put(data, { signal });
    } else {
      result = await blobService.put(this.#streamFile(item.hostPath), { signal });
    }
    if (cache && result.size === size && isRacyClean(stat, examinedMs)) cache.record(identity, result.digest.bytes);
    this.#fileDone(data ? result.size : 0, false);
    return { type: 'file', path: item.names, digest: result.digest, size: result.size, executable };
  }

  /** The whole file when it is small (and stayed so), else undefined: stream it. */
  async #readSmall(path: Buffer, size: number): Promise<Buffer | undefined> {
    if (size > SMALL_FILE_MAX_SIZE) return undefined;
    return this.#io.sync ? this.#io.time(() => readSmallFileSync(path, size)) : readSmallFile(path, size);
  }

  /** File chunks with one read ahead, scanned and counted as they pass. */
  async *#streamFile(path: Buffer): AsyncGenerator<Uint8Array> {
    const { scanner, signal } = this.#options;
    const stream = scanner?.createStream();
    for await (const chunk of readChunks(path, signal)) {
      stream?.update(chunk);
      this.#bytes += chunk.byteLength;
      this.#report();
      yield chunk;
    }
  }

  async #scanOnly(path: Buffer, size: number): Promise<void> {
    const scanner = this.#options.scanner as ReferenceScanner;
    const data = await this.#readSmall(path, size);
    if (data) {
      scanner.scan(data);
      return;
    }
    const stream = scanner.createStream();
    for await (const chunk of readChunks(path, this.#options.signal)) stream.update(chunk);
  }

  #fileDone(bytes: number, cached: boolean): void {
    this.#files++;
    this.#bytes += bytes;
    if (cached) this.#cachedFiles++;
    this.#report();
  }

  #report(): void {
    this.#options.onProgress?.({ files: this.#files, bytes: this.#bytes, cachedFiles: this.#cachedFiles });
  }
}

/**
 * @internal Decides whether small filesystem calls run synchronously (see
 * `WalkFilesystemOptions.io`); shared with export/materialize.ts.
 */
export class SyncIoGovernor {
  #sync: boolean;
  #calls = 0;
  #slow = 0;

  constructor(mode: 'auto' | 'async' = 'auto') {
    this.#sync = mode === 'auto';
  }

  /** Whether calls should still be made synchronously. */
  get sync(): boolean {
    return this.#sync;
  }

  /** Makes a synchronous call and accounts for its duration. */
  time<T>(call: () => T): T {
    const started = performance.now();
    const result = call();
    this.#calls++;
    if (performance.now() - started > SLOW_SYNC_IO_MS) this.#slow++;
    if (this.#calls >= SYNC_IO_MIN_SAMPLES && this.#slow > this.#calls * SLOW_SYNC_IO_SHARE) this.#sync = false;
    return result;
  }

  /** The synchronous variant while calls stay fast, else the asynchronous one. */
  async run<T>(syncCall: () => T, asyncCall: () => Promise<T>): Promise<T> {
    return this.#sync ? this.time(syncCall) : asyncCall();
  }
}

/** Whether both timestamps are safely older than the moment the file was examined. */
function isRacyClean(stat: fs.BigIntStats, examinedMs: number): boolean {
  const limit = BigInt(examinedMs - RACY_CLEAN_MARGIN_MS) * 1_000_000n;
  return stat.mtimeNs < limit && stat.ctimeNs < limit;
}

function changedError(path: Buffer): CastoreError {
  return new CastoreError('INVALID_NODE', `${displayBytes(path)} changed type while being imported`, {
    details: { path: Buffer.from(path) },
  });
}

/**
 * Reads a file expected to hold `size` bytes in one buffer, with plain
 * callbacks (per-file promise overhead is what limits small-file imports).
 * Resolves to undefined when the file turns out larger than `size`, so the
 * caller streams it instead.
 */
function readSmallFile(path: Buffer, size: number): Promise<Buffer | undefined> {
  if (size === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolvePromise, reject) => {
    fs.open(path, OPEN_FLAGS, (openError, fd) => {
      if (openError) return reject(openError);
      const buffer = Buffer.allocUnsafe(size + 1);
      let filled = 0;
      const finish = (error: Error | null, result?: Buffer) =>
        fs.close(fd, (closeError) => {
          if (error ?? closeError) reject(error ?? closeError);
          else resolvePromise(result);
        });
      const step = () =>
        fs.read(fd, buffer, filled, buffer.byteLength - filled, filled, (readError, bytesRead) => {
          if (readError) return finish(readError);
          filled += bytesRead;
          if (filled > size) return finish(null, undefined);
          if (bytesRead === 0 || filled === size) return finish(null, buffer.subarray(0, filled));
          step();
        });
      step();
    });
  });
}

/** `readSmallFile` with synchronous calls. */
function readSmallFileSync(path: Buffer, size: number): Buffer | undefined {
  if (size === 0) return Buffer.alloc(0);
  const fd = fs.openSync(path, OPEN_FLAGS);
  try {
    const buffer = Buffer.allocUnsafe(size + 1);
    let filled = 0;
    for (;;) {
      const bytesRead = fs.readSync(fd, buffer, filled, buffer.byteLength - filled, filled);
      filled += bytesRead;
      if (filled > size) return undefined;
      if (bytesRead === 0 || filled === size) return buffer.subarray(0, filled);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Fresh buffers (consumers may keep them), with the next read already in flight. */
async function* readChunks(path: Buffer, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const handle = await fsp.open(path, OPEN_FLAGS);
  let pending: Promise<Uint8Array> | undefined;
  try {
    const readNext = async () => {
      const buffer = Buffer.allocUnsafe(FILE_READ_CHUNK_SIZE);
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
      return bytesRead === buffer.byteLength ? buffer : buffer.subarray(0, bytesRead);
    };
    pending = readNext();
    for (;;) {
      const chunk = await pending;
      pending = undefined;
      if (chunk.byteLength === 0) return;
      signal?.throwIfAborted();
      pending = readNext();
      yield chunk;
    }
  } finally {
    await pending?.catch(() => {});
    await handle.close();
  }
}

/** lstat with ns times through a plain callback (cheaper than the promise API per call). */
function lstatBigInt(path: Buffer): Promise<fs.BigIntStats> {
  return new Promise((resolvePromise, reject) =>
    fs.lstat(path, { bigint: true }, (error, stat) => (error ? reject(error) : resolvePromise(stat))),
  );
}
