import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { describeBlobServiceConformance } from '../testing/index.js';
import { MEMORY_READ_CHUNK_SIZE, MEMORY_READ_WHOLE_CHUNK_SIZE, MemoryBlobService } from './memory.js';

describeBlobServiceConformance('MemoryBlobService', { create: async () => new MemoryBlobService() });

describe('MemoryBlobService chunks', () => {
  it('reads a blob put in small chunks back in full-size chunks, byte for byte', async () => {
    const service = new MemoryBlobService();
    const data = randomBytes(3 * MEMORY_READ_CHUNK_SIZE + 12_345);
    const small = Array.from({ length: Math.ceil(data.byteLength / 65_000) }, (_, i) => data.subarray(i * 65_000, (i + 1) * 65_000));
    const { digest } = await service.put(small);
    const sizes: number[] = [];
    const read: Buffer[] = [];
    for await (const chunk of (await service.read(digest)) ?? []) {
      sizes.push(chunk.byteLength);
      read.push(Buffer.from(chunk));
    }
    assert.deepEqual(sizes, [MEMORY_READ_CHUNK_SIZE, MEMORY_READ_CHUNK_SIZE, MEMORY_READ_CHUNK_SIZE, 12_345]);
    assert.ok(Buffer.concat(read).equals(data));
  });

  it('reads large chunks back as they were put, without copying them, and cuts longer ones', async () => {
    const service = new MemoryBlobService();
    const sizes = [MEMORY_READ_WHOLE_CHUNK_SIZE, 100, 2 * MEMORY_READ_CHUNK_SIZE + 7, 3 * MEMORY_READ_WHOLE_CHUNK_SIZE];
    const parts = sizes.map((size) => randomBytes(size));
    const { digest } = await service.put(parts, { adoptChunks: true });
    const chunks: Uint8Array[] = [];
    for await (const chunk of (await service.read(digest)) ?? []) chunks.push(chunk);
    assert.deepEqual(
      chunks.map((c) => c.byteLength),
      [MEMORY_READ_WHOLE_CHUNK_SIZE, 100, MEMORY_READ_CHUNK_SIZE, MEMORY_READ_CHUNK_SIZE, 7, 3 * MEMORY_READ_WHOLE_CHUNK_SIZE],
    );
    assert.equal(chunks[0]?.buffer, parts[0]?.buffer, 'an adopted chunk is kept and read back as it is');
    assert.ok(Buffer.concat(chunks).equals(Buffer.concat(parts)));
  });

  it('copies what it is given unless the chunks are handed over', async () => {
    const service = new MemoryBlobService();
    const data = randomBytes(MEMORY_READ_WHOLE_CHUNK_SIZE);
    const expected = Buffer.from(data);
    const { digest } = await service.put([data]);
    data.fill(0);
    const chunks: Uint8Array[] = [];
    for await (const chunk of (await service.read(digest)) ?? []) chunks.push(chunk);
    const read = Buffer.concat(chunks);
    assert.ok(read.equals(expected));
  });
});
