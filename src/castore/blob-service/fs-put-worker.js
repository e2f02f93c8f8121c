// A put worker of FsBlobService (started by fs-put-pool.ts): stores batches
// of local files with fs-put-file.js and answers with packed results. Plain
// JavaScript so that it starts in tens of milliseconds, without a loader.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { createFilePutter } from './fs-put-file.js';

const require = createRequire(import.meta.url);
const blake3 = require(workerData.blake3 === 'native' ? '@c4312/blake3-native' : 'blake3-wasm/dist/node/index.js');
const putFile = createFilePutter({ ...workerData.putter, createHash: () => blake3.createHash() });

parentPort.on('message', ({ id, paths, ends, hints }) => {
  const count = ends.length;
  const digests = new Uint8Array(32 * count);
  const sizes = new Float64Array(count);
  const stored = new Uint8Array(count);
  let errors;
  for (let index = 0, start = 0; index < count; start = ends[index++]) {
    try {
      const result = putFile(Buffer.from(paths.buffer, paths.byteOffset + start, ends[index] - start), hints[index]);
      digests.set(result.digest, 32 * index);
      sizes[index] = result.size;
      stored[index] = result.stored ? 1 : 0;
    } catch (error) {
      const { message, code, errno, syscall, path } = error instanceof Error ? error : new Error(String(error));
      (errors ??= []).push({ index, message, code, errno, syscall, path: typeof path === 'string' ? path : undefined });
    }
  }
  parentPort.postMessage({ id, digests, sizes, stored, errors }, [digests.buffer, sizes.buffer, stored.buffer]);
});
parentPort.postMessage({ ready: true });
