import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { createOffThreadHash, HASH_RING_BYTES, MOVED_BUFFER_BYTES } from './off-thread-hash.js';

/** `total` bytes of random data cut into chunks of uneven sizes (some larger than the ring). */
function unevenChunks(total: number): Buffer[] {
  const data = randomBytes(total);
  const sizes = [1, 4095, 1 << 20, 3 * 2 ** 20 + 17, HASH_RING_BYTES + 5, 12345];
  const chunks: Buffer[] = [];
  for (let offset = 0, i = 0; offset < total; i++) {
    const size = Math.min(sizes[i % sizes.length] as number, total - offset);
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

async function hashOffThread(chunks: readonly Buffer[], algos: string[]): Promise<Uint8Array[]> {
  const hash = createOffThreadHash(algos);
  const scratch = Buffer.alloc(Math.max(...chunks.map((c) => c.byteLength)));
  for (const chunk of chunks) {
    // The caller may reuse its buffer as soon as update returns (or its promise settles).
    chunk.copy(scratch);
    const wait = hash.update(scratch.subarray(0, chunk.byteLength));
    if (wait) await wait;
    scratch.fill(0xee);
  }
  return hash.digest();
}

describe('off-thread hashing', () => {
  it('gives node:crypto digests for a stream several rings long, in any chunk sizes', async () => {
    const chunks = unevenChunks(3 * HASH_RING_BYTES + 999);
    const digests = await hashOffThread(chunks, ['sha256', 'sha512']);
    for (const [index, algo] of ['sha256', 'sha512'].entries()) {
      const expected = createHash(algo);
      for (const chunk of chunks) expected.update(chunk);
      assert.deepEqual(Buffer.from(digests[index] as Uint8Array), expected.digest(), algo);
    }
  });

  it('hashes chunks moved in its own buffers and copied ones in their order', async () => {
    const data = randomBytes(40 * MOVED_BUFFER_BYTES + 12345);
    const hash = createOffThreadHash(['sha256']);
    let moved = 0;
    for (let offset = 0, i = 0; offset < data.byteLength; i++) {
      const buffer = hash.freeBuffer();
      assert.equal(hash.freeBuffer()?.buffer, buffer?.buffer, 'the same buffer until one is moved');
      const size = Math.min(i % 3 === 0 ? 100 : MOVED_BUFFER_BYTES - (i % 7), data.byteLength - offset);
      const chunk = data.subarray(offset, offset + size);
      offset += size;
      if (buffer && i % 3 !== 0) {
        chunk.copy(buffer);
        assert.ok(hash.updateInPlace(buffer.subarray(0, size)));
        assert.equal(buffer.byteLength, 0, 'a moved buffer is emptied here');
        moved++;
      } else {
        assert.equal(hash.updateInPlace(chunk), false, 'a chunk of another buffer is not moved');
        const wait = hash.update(chunk);
        if (wait) await wait;
      }
      if (i % 5 === 0) await new Promise((resolve) => setImmediate(resolve)); // let some buffers come back
    }
    assert.ok(moved > 8, `buffers came back and were moved again (${moved} moves)`);
    const [digest] = await hash.digest();
    assert.deepEqual(Buffer.from(digest as Uint8Array), createHash('sha256').update(data).digest());
  });

  it('gives out no buffer while all of them are at the worker, and says when one comes back', async () => {
    const hash = createOffThreadHash(['sha256']);
    const expected = createHash('sha256');
    let buffer = hash.freeBuffer();
    let count = 0;
    for (; buffer; buffer = hash.freeBuffer(), count++) {
      buffer.fill(count);
      expected.update(buffer);
      hash.updateInPlace(buffer);
    }
    assert.ok(count >= 2, `${count} buffers`);
    const free = hash.bufferFree();
    assert.ok(free, 'a wait while every buffer is at the worker');
    await free;
    assert.equal(hash.bufferFree(), undefined, 'no wait once one came back');
    const back = hash.freeBuffer();
    assert.ok(back, 'the buffer that came back is given out again');
    back.fill(0xee);
    expected.update(back);
    hash.updateInPlace(back);
    const [digest] = await hash.digest();
    assert.deepEqual(Buffer.from(digest as Uint8Array), expected.digest());
  });

  it('keeps hashes open at the same time apart', async () => {
    const streams = [unevenChunks(5 * 2 ** 20), unevenChunks(HASH_RING_BYTES * 2), unevenChunks(10)];
    const results = await Promise.all(streams.map((chunks) => hashOffThread(chunks, ['sha256'])));
    for (const [index, chunks] of streams.entries()) {
      const expected = createHash('sha256');
      for (const chunk of chunks) expected.update(chunk);
      assert.deepEqual(Buffer.from((results[index] as Uint8Array[])[0] as Uint8Array), expected.digest());
    }
  });

  it('an empty stream hashes to the empty digest', async () => {
    const [digest] = await createOffThreadHash(['sha1']).digest();
    assert.deepEqual(Buffer.from(digest as Uint8Array), createHash('sha1').digest());
  });

  it('an unknown algorithm fails the digest with the worker’s reason', async () => {
    const hash = createOffThreadHash(['no-such-hash']);
    hash.update(Buffer.from('x'));
    await assert.rejects(hash.digest(), /hash worker/);
  });

  it('an aborted hash frees the worker for the next one', async () => {
    const hash = createOffThreadHash(['sha256']);
    hash.update(randomBytes(1000));
    hash.abort();
    const [digest] = await hashOffThread([Buffer.from('after')], ['sha256']);
    assert.deepEqual(Buffer.from(digest as Uint8Array), createHash('sha256').update('after').digest());
  });
});
