/**
 * Export: writes a castore node (a file, a symlink or a whole directory tree)
 * to a path on disk, verified, atomically, and without copying bytes where
 * the blob store keeps them as local files. Depends on castore contracts and
 * node:fs only.
 *
 * What lands on disk:
 * - files are read-only: 0444, or 0555 when executable (as in a Nix store);
 *   directories are 0755, so the owner can delete the tree without chmod;
 *   symlinks get their raw target bytes; names are raw bytes.
 * - the tree is built in a temporary sibling of `dest` and renamed to `dest`
 *   only once complete; on any failure (a missing or corrupt blob, an abort)
 *   the sibling is removed and `dest` is never created. `dest` is checked to
 *   be absent at the start and again just before the rename (rename(2) would
 *   silently replace an empty directory created in between).
 *
 * Verification: bytes streamed out of the blob service are hashed by it (the
 * BlobService contract), and their count is checked against the node's size;
 * a mismatch fails with `INTEGRITY_MISMATCH` naming the digest. A file taken
 * from the store's local blob file (hardlink or reflink) is checked by size,
 * or fully hashed first with `verify: 'full'`.
 *
 * Hardlinks share the store's inode, so mode and contents are shared too: a
 * file is hardlinked only when the store file already has the wanted mode
 * (blob files are typically 0444, so executables are reflinked or copied),
 * and writing to an exported hardlink (root ignores the read-only mode)
 * would corrupt the store.
 */
import { randomBytes } from 'node:crypto';
import * as fsSync from 'node:fs';
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AbortOptions } from '../../common/abort.js';
import { mapConcurrent } from '../../common/async-iterable.js';
import { createBlake3 } from '../../common/blake3.js';
import { displayBytes } from '../../common/encoding.js';
import { B3Digest } from '../b3-digest.js';
import { type BlobService, hasLocalBlobFiles } from '../blob-service/blob-service.js';
import { integrityError } from '../blob-service/verify-stream.js';
import type { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { CastoreError } from '../errors.js';
import { SyncIoGovernor } from '../import/walk-filesystem.js';
import type { DirectoryNode, FileNode, Node } from '../node.js';

/** Files written at once. */
export const DEFAULT_MATERIALIZE_CONCURRENCY = 16;
/** Blobs up to this size are collected and written in one call; larger ones are streamed to their file. */
export const WHOLE_FILE_MAX_SIZE = 1 << 20;
/** Mode of exported regular files. */
export const MATERIALIZED_FILE_MODE = 0o444;
/** Mode of exported executable files. */
export const MATERIALIZED_EXECUTABLE_MODE = 0o555;
/** Mode of exported directories. */
export const MATERIALIZED_DIRECTORY_MODE = 0o755;

/**
 * How file contents reach `dest` when the blob service exposes local blob
 * files (`LocalBlobFiles`); without them every file is copied from `read`.
 * - `'auto'` (default): hardlink when the store file's mode matches, else
 *   reflink, falling back to a plain copy where the filesystem cannot clone
 *   or link (another filesystem, no reflink support).
 * - `'hardlink'`: like `'auto'`, but a hardlink the filesystem refuses (EXDEV,
 *   EMLINK, EPERM) is an error instead of a silent copy.
 * - `'reflink'`: always clone; an error where the filesystem cannot.
 * - `'copy'`: always stream the bytes through the blob service.
 */
export type MaterializeLink = 'hardlink' | 'reflink' | 'copy' | 'auto';

export interface MaterializeOptions extends AbortOptions {
  /** Source of file contents; `localBlobPath`, when present, enables links. */
  blobService: Pick<BlobService, 'read'>;
  /** Source of directories; only needed for directory nodes. */
  directoryService: Pick<DirectoryService, 'getRecursive'>;
  /** Default `'auto'`. */
  link?: MaterializeLink;
  /**
   * Checks on files taken from local blob files: `'size'` (default) compares
   * the file size with the node; `'full'` also hashes the blob file before
   * linking it. Streamed copies are always fully verified.
   */
  verify?: 'size' | 'full';
  /** Files written in parallel; default `DEFAULT_MATERIALIZE_CONCURRENCY`. */
  concurrency?: number;
  /**
   * `'auto'` (default): directories, symlinks, links and small files are
   * created with synchronous system calls while they stay fast, as
   * `WalkFilesystemOptions.io` describes (a thread-pool round trip per call
   * costs more than the call itself on small machines). `'async'`: always
   * through the thread pool.
   */
  io?: 'auto' | 'async';
}

/** What `materialize` did, for logs and tests. */
export interface MaterializeStats {
  /** Regular files written. */
  readonly files: number;
  /** Of those, hardlinked to the store's blob files. */
  readonly hardlinked: number;
  /** Of those, cloned or copied from local blob files with `copyFile`. */
  readonly cloned: number;
  /** Of those, streamed through `blobService.read`. */
  readonly streamed: number;
}

/**
 * Writes `node` at `dest`, which must not exist (an `EEXIST` error as Node's
 * fs raises it otherwise). Missing blobs or directories fail with
 * `NOT_FOUND`, corrupt ones with `INTEGRITY_MISMATCH`; an abort rejects with
 * the signal's reason. In every failure case nothing is left at `dest`.
 */
export async function materialize(node: Node, dest: string, options: MaterializeOptions): Promise<MaterializeStats> {
  const { signal } = options;
  signal?.throwIfAborted();
  await assertAbsent(dest);
  const temp = join(dirname(dest), `.kiln-materialize-${process.pid}-${randomBytes(6).toString('hex')}`);
  const writer = new TreeWriter(options);
  try {
    if (node.type === 'file') {
      await writer.writeFile(node, Buffer.from(temp));
    } else if (node.type === 'symlink') {
      await writer.writeSymlink(node.target, Buffer.from(temp));
    } else {
      await writer.writeTree(node, Buffer.from(temp));
    }
    signal?.throwIfAborted();
    await assertAbsent(dest);
    await fs.rename(temp, dest);
  } catch (error) {
    await fs.rm(temp, { recursive: true, force: true });
    throw error;
  }
  return writer.stats();
}

async function assertAbsent(dest: string): Promise<void> {
  try {
    await fs.lstat(dest);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  throw Object.assign(new Error(`EEXIST: destination already exists, materialize '${dest}'`), {
    code: 'EEXIST',
    syscall: 'materialize',
    path: dest,
  });
}

interface FileJob {
  readonly node: FileNode;
  readonly path: Buffer;
}

const SLASH = Buffer.from('/');
const LINK_REFUSED = new Set(['EXDEV', 'EMLINK', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP']);

class TreeWriter {
  readonly #options: MaterializeOptions;
  readonly #local: ((digest: B3Digest) => Promise<string | undefined>) | undefined;
  readonly #governor: SyncIoGovernor;
  /** Whether open() modes come out exact, or the umask strips bits and a chmod must follow (learned on the first file). */
  #umaskStrips: boolean | undefined;
  #files = 0;
  #hardlinked = 0;
  #cloned = 0;
  #streamed = 0;

  constructor(options: MaterializeOptions) {
    this.#options = options;
    const service = options.blobService as BlobService;
    this.#local = hasLocalBlobFiles(service) && options.link !== 'copy' ? (digest) => service.localBlobPath(digest) : undefined;
    this.#governor = new SyncIoGovernor(options.io);
  }

  stats(): MaterializeStats {
    return { files: this.#files, hardlinked: this.#hardlinked, cloned: this.#cloned, streamed: this.#streamed };
  }

  #io<T>(syncCall: () => T, asyncCall: () => Promise<T>): Promise<T> {
    return this.#governor.run(syncCall, asyncCall);
  }

  async writeTree(root: DirectoryNode, path: Buffer): Promise<void> {
    const directories = await this.#loadClosure(root);
    const jobs = this.#createTree(root.digest, directories, path);
    const concurrency = this.#options.concurrency ?? DEFAULT_MATERIALIZE_CONCURRENCY;
    for await (const _ of mapConcurrent(jobs, concurrency, (job) => this.writeFile(job.node, job.path))) {
      // writes complete in order; nothing to collect
    }
  }

  async #loadClosure(root: DirectoryNode): Promise<Map<string, Directory>> {
    const directories = new Map<string, Directory>();
    for await (const directory of this.#options.directoryService.getRecursive(root.digest, { signal: this.#options.signal })) {
      directories.set(directory.digest.toHex(), directory);
    }
    if (!directories.has(root.digest.toHex())) {
      throw new CastoreError('NOT_FOUND', `directory ${root.digest} not found`, { details: { digest: root.digest.toString() } });
    }
    return directories;
  }

  /**
   * Creates directories and symlinks depth first and yields the files to
   * write; directory modes are set once every directory exists.
   */
  async *#createTree(rootDigest: B3Digest, directories: Map<string, Directory>, rootPath: Buffer): AsyncGenerator<FileJob> {
    const { signal } = this.#options;
    const stack: { digest: B3Digest; path: Buffer }[] = [{ digest: rootDigest, path: rootPath }];
    const created: Buffer[] = [];
    while (stack.length > 0) {
      signal?.throwIfAborted();
      const { digest, path } = stack.pop() as { digest: B3Digest; path: Buffer };
      const directory = directories.get(digest.toHex());
      if (!directory) {
        throw new CastoreError('NOT_FOUND', `directory ${digest} (at ${displayBytes(path)}) not found`, {
          details: { digest: digest.toString() },
        });
      }
      await this.#io(
        () => fsSync.mkdirSync(path, { mode: MATERIALIZED_DIRECTORY_MODE }),
        () => fs.mkdir(path, { mode: MATERIALIZED_DIRECTORY_MODE }),
      );
      created.push(path);
      for (const { name, node } of directory.entries) {
        const childPath = Buffer.concat([path, SLASH, name]);
        if (node.type === 'directory') stack.push({ digest: node.digest, path: childPath });
        else if (node.type === 'symlink') await this.writeSymlink(node.target, childPath);
        else yield { node, path: childPath };
      }
    }
    // mkdir applied the umask; set the documented mode exactly.
    for (const path of created) {
      await this.#io(
        () => fsSync.chmodSync(path, MATERIALIZED_DIRECTORY_MODE),
        () => fs.chmod(path, MATERIALIZED_DIRECTORY_MODE),
      );
    }
  }

  writeSymlink(target: Uint8Array, path: Buffer): Promise<void> {
    const bytes = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
    return this.#io(
      () => fsSync.symlinkSync(bytes, path),
      () => fs.symlink(bytes, path),
    );
  }

  async writeFile(node: FileNode, path: Buffer): Promise<void> {
    this.#options.signal?.throwIfAborted();
    const mode = node.executable ? MATERIALIZED_EXECUTABLE_MODE : MATERIALIZED_FILE_MODE;
    const local = await this.#local?.(node.digest);
    if (local !== undefined) await this.#fromLocalFile(node, local, path, mode);
    else await this.#stream(node, path, mode);
    this.#files++;
  }

  async #fromLocalFile(node: FileNode, local: string, path: Buffer, mode: number): Promise<void> {
    const { link = 'auto', verify = 'size' } = this.#options;
    const stat = await this.#io(
      () => fsSync.statSync(local),
      () => fs.stat(local),
    );
    if (stat.size !== node.size) throw sizeMismatch(node, stat.size);
    if (verify === 'full') await verifyFile(node.digest, local, this.#options.signal);
    if (link !== 'reflink' && (stat.mode & 0o777) === mode) {
      if (await this.#tryHardlink(local, path, link === 'hardlink')) return;
    }
    const flags = constants.COPYFILE_EXCL | (link === 'reflink' ? constants.COPYFILE_FICLONE_FORCE : constants.COPYFILE_FICLONE);
    await fs.copyFile(local, path, flags);
    await fs.chmod(path, mode);
    this.#cloned++;
  }

  async #tryHardlink(local: string, path: Buffer, required: boolean): Promise<boolean> {
    try {
      await this.#io(
        () => fsSync.linkSync(local, path),
        () => fs.link(local, path),
      );
      this.#hardlinked++;
      return true;
    } catch (error) {
      if (required || !LINK_REFUSED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
      return false;
    }
  }

  async #stream(node: FileNode, path: Buffer, mode: number): Promise<void> {
    const { signal } = this.#options;
    const source = await this.#options.blobService.read(node.digest, { signal });
    if (!source) {
      throw new CastoreError('NOT_FOUND', `blob ${node.digest} for ${displayBytes(path)} not found`, {
        details: { digest: node.digest.toString() },
      });
    }
    if (node.size <= WHOLE_FILE_MAX_SIZE) await this.#writeWhole(await collectBlob(node, source, signal), path, mode);
    else await this.#writeStreaming(node, source, path, mode);
    this.#streamed++;
  }

  /** Small files: the verified bytes in hand, one open/write/close (plus a chmod if the umask interferes). */
  async #writeWhole(data: Uint8Array, path: Buffer, mode: number): Promise<void> {
    await this.#io(
      () => fsSync.writeFileSync(path, data, { flag: 'wx', mode }),
      () => fs.writeFile(path, data, { flag: 'wx', mode }),
    );
    if (this.#umaskStrips === undefined) {
      const actual = (await fs.stat(path)).mode & 0o777;
      this.#umaskStrips = actual !== mode;
    }
    if (this.#umaskStrips) await fs.chmod(path, mode);
  }

  async #writeStreaming(node: FileNode, source: AsyncIterable<Uint8Array>, path: Buffer, mode: number): Promise<void> {
    const { signal } = this.#options;
    const handle = await fs.open(path, 'wx', mode);
    try {
      let size = 0;
      for await (const chunk of source) {
        signal?.throwIfAborted();
        size += chunk.byteLength;
        if (size > node.size) throw sizeMismatch(node, size);
        let written = 0;
        while (written < chunk.byteLength) written += (await handle.write(chunk, written)).bytesWritten;
      }
      if (size !== node.size) throw sizeMismatch(node, size);
      await handle.chmod(mode);
    } finally {
      await handle.close();
    }
  }
}

/** Reads a whole (small) blob, checking its length against the node as it arrives. */
async function collectBlob(node: FileNode, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    signal?.throwIfAborted();
    size += chunk.byteLength;
    if (size > node.size) throw sizeMismatch(node, size);
    parts.push(chunk);
  }
  if (size !== node.size) throw sizeMismatch(node, size);
  return parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts, size);
}

function sizeMismatch(node: FileNode, actual: number): CastoreError {
  const found = actual > node.size ? `more than ${node.size} bytes` : `${actual} bytes`;
  return new CastoreError('INTEGRITY_MISMATCH', `blob ${node.digest} has ${found}, but its file node says ${node.size}`, {
    details: { digest: node.digest.toString(), expected: node.size, actual },
  });
}

async function verifyFile(digest: B3Digest, path: string, signal?: AbortSignal): Promise<void> {
  const hasher = createBlake3();
  const handle = await fs.open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) break;
      hasher.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  const actual = B3Digest.fromBytes(hasher.digest());
  if (!actual.equals(digest)) throw integrityError(digest, actual);
}
