// Storing one local file as a blob of FsBlobService, with synchronous calls.
// Plain JavaScript (types in fs-put-file.d.ts) because it also runs in the
// put workers, which start without a TypeScript loader (see fs-put-pool.ts).
import { closeSync, constants, existsSync, fdatasyncSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Read buffer: whole files up to this size take one read; larger ones stream through it. */
export const PUT_FILE_BUFFER_SIZE = (1 << 20) + 1;

const SOURCE_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0);
const TMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

/**
 * Stores a buffer whose digest the caller already computed (and checked).
 * @param {import('./fs-put-file.js').FilePutterOptions} options
 */
export function createBlobWriter(options) {
  const writeBlob = createWriteBlob(options, () => {
    throw new Error('unreachable: a blob writer never streams');
  });
  return (data, digest) => writeBlob(data, undefined, digest);
}

/** @param {import('./fs-put-file.js').FilePutterOptions} options */
export function createFilePutter(options) {
  const { blobsDir, createHash } = options;
  /** @type {Buffer | undefined} */
  let buffer;
  const writeBlob = createWriteBlob(options, () => buffer);
  const blobPath = blobPathIn(blobsDir);

  /**
   * Stores the bytes of the file at `path` (not following a symlink), read
   * front to back until end of file. `sizeHint`, the size a stat saw, saves
   * the read that would confirm the end of the file.
   */
  return function putFile(path, sizeHint) {
    buffer ??= Buffer.allocUnsafe(PUT_FILE_BUFFER_SIZE);
    let source = openSync(path, SOURCE_FLAGS);
    try {
      let filled = 0;
      for (;;) {
        const wanted = buffer.byteLength - filled;
        if (wanted === 0) return writeBlob(buffer.subarray(0, filled), source, undefined);
        const bytesRead = readSync(source, buffer, filled, wanted, null);
        filled += bytesRead;
        if (bytesRead === 0 || (bytesRead < wanted && filled === sizeHint)) break;
      }
      closeSync(source);
      source = -1;
      const data = buffer.subarray(0, filled);
      const hasher = createHash();
      hasher.update(data);
      const digest = new Uint8Array(hasher.digest());
      if (existsSync(blobPath(digest))) return { digest, size: filled, stored: false };
      return writeBlob(data, undefined, digest);
    } finally {
      if (source >= 0) closeSync(source);
    }
  };
}

/**
 * The temp-file-then-rename writer shared by file puts and buffer puts.
 * @param {import('./fs-put-file.js').FilePutterOptions} options
 * @param {() => Buffer} readBuffer the buffer to stream the rest of a file through
 */
function createWriteBlob(options, readBuffer) {
  const { blobsDir, tmpDir, tmpPrefix, fsyncAlways, createHash } = options;
  let tmpCounter = 0;
  const tmpPrefixPath = join(tmpDir, tmpPrefix);
  const blobPath = blobPathIn(blobsDir);

  const writeAll = (fd, data) => {
    for (let written = 0; written < data.byteLength; ) written += writeSync(fd, data, written, data.byteLength - written);
  };

  const syncDirectory = (path) => {
    const fd = openSync(path, constants.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  };

  /**
   * Copies `first` and then the rest of `source` into a fresh temp file and
   * renames it into place; without `digest` (not known yet) the bytes are
   * hashed as they pass and the blob is dropped if it turns out stored. On any
   * failure the temp file is removed.
   */
  const writeBlob = (first, source, digest) => {
    const tmpPath = `${tmpPrefixPath}${(++tmpCounter).toString(36)}`;
    let fd = openSync(tmpPath, TMP_FLAGS, 0o444);
    try {
      const hasher = digest ? undefined : createHash();
      let size = 0;
      for (let chunk = first; chunk.byteLength > 0; ) {
        hasher?.update(chunk);
        writeAll(fd, chunk);
        size += chunk.byteLength;
        if (source === undefined) break;
        const buffer = readBuffer();
        chunk = buffer.subarray(0, readSync(source, buffer, 0, buffer.byteLength, null));
      }
      const finalDigest = digest ?? new Uint8Array(hasher.digest());
      const target = blobPath(finalDigest);
      if (!digest && existsSync(target)) {
        closeSync(fd);
        fd = -1;
        rmSync(tmpPath, { force: true });
        return { digest: finalDigest, size, stored: false };
      }
      if (fsyncAlways) fdatasyncSync(fd);
      closeSync(fd);
      fd = -1;
      renameSync(tmpPath, target);
      if (fsyncAlways) syncDirectory(dirname(target));
      return { digest: finalDigest, size, stored: true };
    } catch (error) {
      if (fd >= 0) closeSync(fd);
      rmSync(tmpPath, { force: true });
      throw error;
    }
  };

  return writeBlob;
}

/**
 * The store's blob file layout, `<blobsDir>/<2 hex>/<hex>`, by plain
 * concatenation: path.join would normalise the same directory for every file.
 * @param {string} blobsDir
 * @returns {(digest: Uint8Array) => string}
 */
export function blobPathIn(blobsDir) {
  const blobsPrefix = `${join(blobsDir, '.')}/`;
  return (digest) => {
    const hex = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
    return `${blobsPrefix}${hex.slice(0, 2)}/${hex}`;
  };
}
