// The worker behind off-thread-hash.ts: keeps a set of node:crypto hashes
// and a ring of shared memory per open hash, hashes each stretch of the
// ring it is told of, and says when the stretch is free again; a buffer
// moved here is hashed and moved back. Plain
// JavaScript so that it starts in tens of milliseconds, without a loader.
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

const sessions = new Map();

parentPort.on('message', (message) => {
  const { id } = message;
  try {
    if (message.algos) {
      sessions.set(id, { hashes: message.algos.map((algo) => createHash(algo)), ring: new Uint8Array(message.ring) });
    } else if (message.buffer) {
      const session = sessions.get(id);
      if (!session) return;
      const chunk = new Uint8Array(message.buffer, message.start, message.length);
      for (const hash of session.hashes) hash.update(chunk);
      parentPort.postMessage({ id, returned: message.buffer }, [message.buffer]);
    } else if (message.length !== undefined) {
      const session = sessions.get(id);
      if (!session) return;
      const stretch = session.ring.subarray(message.start, message.start + message.length);
      for (const hash of session.hashes) hash.update(stretch);
      parentPort.postMessage({ id, hashed: message.length });
    } else if (message.finish) {
      const session = sessions.get(id);
      if (!session) throw new Error(`no open hash ${id}`);
      sessions.delete(id);
      parentPort.postMessage({ id, digests: session.hashes.map((hash) => new Uint8Array(hash.digest())) });
    } else if (message.abort) {
      sessions.delete(id);
    }
  } catch (error) {
    sessions.delete(id);
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
