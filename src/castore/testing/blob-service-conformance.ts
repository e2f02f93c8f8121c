/**
 * The behaviour suite every BlobService backend runs (memory, fs, gRPC, and
 * any third-party backend through `kiln/castore/testing`). Registers node:test
 * blocks and asserts with node:assert/strict only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { concatBytes } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import type { BlobService } from '../blob-service/blob-service.js';
import { isCastoreError } from '../errors.js';
import {
  BLOB_A,
  BLOB_A_DIGEST,
  BLOB_B,
  BLOB_B_DIGEST,
  EMPTY_BLOB,
  EMPTY_BLOB_DIGEST,
  HELLOWORLD_BLOB,
  HELLOWORLD_BLOB_DIGEST,
} from './fixtures.js';

export interface ServiceHarness<S> {
  create(): Promise<S>;
  destroy?(service: S): Promise<void>;
  /** When set, every case is skipped with this reason printed. */
  skipReason?(): string | undefined;
}

async function readAll(service: BlobService, digest: B3Digest, offset?: number): Promise<Uint8Array | undefined> {
  const stream = await service.read(digest, offset === undefined ? {} : { offset });
  return stream && concatBytes(stream);
}

async function* slowChunks(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += size) yield data.subarray(offset, offset + size);
}

export function describeBlobServiceConformance(label: string, harness: ServiceHarness<BlobService>): void {
  const skip = harness.skipReason?.();
  describe(`${label} BlobService conformance`, { skip: skip ?? false }, () => {
    let service: BlobService;
    before(async () => {
      service = await harness.create();
    });
    after(async () => {
      if (!service) return;
      if (harness.destroy) await harness.destroy(service);
      else await service.close();
    });

    it('has returns false and read returns undefined for an unknown digest', async () => {
      const unknown = B3Digest.fromBytes(new Uint8Array(32));
      assert.equal(await service.has(unknown), false);
      assert.equal(await service.read(unknown), undefined);
    });

    for (const [name, bytes, digest] of [
      ['empty', EMPTY_BLOB, EMPTY_BLOB_DIGEST],
      ['2-byte BLOB_A', BLOB_A, BLOB_A_DIGEST],
      ['12-byte HELLOWORLD', HELLOWORLD_BLOB, HELLOWORLD_BLOB_DIGEST],
      ['1 MiB BLOB_B', BLOB_B, BLOB_B_DIGEST],
    ] as const) {
      it(`put, has and read round-trip the ${name} blob with its reference digest`, async () => {
        const result = await service.put(bytes);
        assert.equal(result.digest.toHex(), digest.toHex());
        assert.equal(result.size, bytes.byteLength);
        assert.equal(await service.has(digest), true);
        assert.deepEqual(await readAll(service, digest), bytes);
      });
    }

    it('put accepts a stream of odd-sized chunks and hashes all of it', async () => {
      const result = await service.put(slowChunks(BLOB_B, 65_537));
      assert.equal(result.digest.toHex(), BLOB_B_DIGEST.toHex());
      assert.equal(result.size, BLOB_B.byteLength);
    });

    it('putting the same content twice is a no-op', async () => {
      const first = await service.put(BLOB_A);
      const second = await service.put(BLOB_A);
      assert.ok(first.digest.equals(second.digest));
      assert.deepEqual(await readAll(service, BLOB_A_DIGEST), BLOB_A);
    });

    it('read from an offset returns the tail', async () => {
      await service.put(BLOB_B);
      assert.deepEqual(await readAll(service, BLOB_B_DIGEST, 1000), BLOB_B.subarray(1000));
      assert.deepEqual(await readAll(service, BLOB_B_DIGEST, BLOB_B.byteLength - 3), BLOB_B.subarray(BLOB_B.byteLength - 3));
      assert.deepEqual(await readAll(service, BLOB_B_DIGEST, BLOB_B.byteLength + 10), new Uint8Array(0));
    });

    it('put with a wrong expectedDigest fails with INTEGRITY_MISMATCH and stores nothing', async () => {
      const data = new TextEncoder().encode(`expected-digest-${label}-${Math.random()}`);
      const actual = B3Digest.of(data);
      await assert.rejects(service.put(data, { expectedDigest: HELLOWORLD_BLOB_DIGEST }), (e) => isCastoreError(e, 'INTEGRITY_MISMATCH'));
      assert.equal(await service.has(actual), false);
    });

    it('100 parallel puts all succeed and read back', async () => {
      const blobs = Array.from({ length: 100 }, (_, i) => new TextEncoder().encode(`parallel blob ${i} of ${label}`));
      const results = await Promise.all(blobs.map((b) => service.put(b)));
      for (let i = 0; i < blobs.length; i++) {
        assert.equal(results[i]?.digest.toHex(), B3Digest.of(blobs[i] as Uint8Array).toHex());
        assert.deepEqual(await readAll(service, (results[i] as { digest: B3Digest }).digest), blobs[i]);
      }
    });

    it('an aborted signal rejects with signal.reason', async () => {
      const controller = new AbortController();
      const reason = new Error('stop now');
      controller.abort(reason);
      await assert.rejects(service.has(BLOB_A_DIGEST, { signal: controller.signal }), (e) => e === reason);
      await assert.rejects(service.read(BLOB_A_DIGEST, { signal: controller.signal }), (e) => e === reason);
      await assert.rejects(service.put(BLOB_A, { signal: controller.signal }), (e) => e === reason);
    });

    it('a put aborted midway stores nothing', async () => {
      const controller = new AbortController();
      const reason = new Error('cut off');
      const data = new TextEncoder().encode(`aborted upload ${label} ${Math.random()}`.repeat(1000));
      async function* source() {
        yield data.subarray(0, 100);
        controller.abort(reason);
        yield data.subarray(100);
      }
      await assert.rejects(service.put(source(), { signal: controller.signal }), (e) => e === reason);
      assert.equal(await service.has(B3Digest.of(data)), false);
    });

    it('a put whose source fails stores nothing', async () => {
      const data = new TextEncoder().encode(`failing upload ${label} ${Math.random()}`.repeat(1000));
      async function* source() {
        yield data.subarray(0, 100);
        throw new Error('source broke');
      }
      await assert.rejects(service.put(source()));
      assert.equal(await service.has(B3Digest.of(data)), false);
    });

    it('breaking out of a read early releases the resource', async () => {
      await service.put(BLOB_B);
      for (let i = 0; i < 20; i++) {
        const stream = await service.read(BLOB_B_DIGEST);
        assert.ok(stream);
        for await (const chunk of stream) {
          assert.ok(chunk.byteLength > 0);
          break;
        }
      }
      assert.deepEqual(await readAll(service, BLOB_B_DIGEST), BLOB_B);
    });
  });
}
