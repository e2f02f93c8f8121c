import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { describeBlobServiceConformance } from '../testing/index.js';
import { MEMORY_READ_CHUNK_SIZE, MemoryBlobService } from './memory.js';

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
});
