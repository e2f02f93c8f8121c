import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { B3Digest } from '../b3-digest.js';
import { isCastoreError } from '../errors.js';
import { FsBlobService } from './fs.js';
import { FilePutPool } from './fs-put-pool.js';

const roots: string[] = [];
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

/** A store's directories (via FsBlobService.open) and a pool over them running `worker` (default: the real one). */
async function poolWith(worker?: string, inlinePutsBeforeWorkers = 0): Promise<{ root: string; pool: FilePutPool }> {
  const root = await fs.mkdtemp(join(tmpdir(), 'kiln-put-pool-'));
  roots.push(root);
  await FsBlobService.open(root);
  const workerUrl = worker === undefined ? undefined : new URL(`data:text/javascript,${encodeURIComponent(worker)}`);
  const pool = new FilePutPool({
    blobsDir: join(root, 'blobs'),
    tmpDir: join(root, 'tmp'),
    fsyncAlways: false,
    threads: 1,
    inlinePutsBeforeWorkers,
    workerUrl,
  });
  return { root, pool };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const exists = (path: string) =>
  fs.access(path).then(
    () => true,
    () => false,
  );

describe('FilePutPool', () => {
  it('its worker stores batches and answers with digests, sizes and the errors Node raised', async () => {
    const { root, pool } = await poolWith();
    await fs.writeFile(join(root, 'warm-up'), '');
    await pool.put(Buffer.from(join(root, 'warm-up')), 0); // inline while the worker starts
    await sleep(500);
    const files = Array.from({ length: 200 }, (_, i) => ({ path: join(root, `f${i}`), bytes: Buffer.alloc(i * 97, i) }));
    for (const { path, bytes } of files) await fs.writeFile(path, bytes);
    const puts = files.map(({ path, bytes }, i) => pool.put(Buffer.from(path), i % 3 === 0 ? bytes.byteLength : -1));
    const missing = pool.put(Buffer.from(join(root, 'missing')), 10);
    for (const [i, result] of (await Promise.all(puts)).entries()) {
      assert.ok(B3Digest.fromBytes(result.digest).equals(B3Digest.of(files[i]!.bytes)));
      assert.equal(result.size, files[i]!.bytes.byteLength);
    }
    await assert.rejects(missing, (e: NodeJS.ErrnoException) => {
      return e instanceof Error && e.code === 'ENOENT' && e.syscall === 'open' && e.path === join(root, 'missing');
    });
    const tmp = await fs.readdir(join(root, 'tmp'));
    await pool.close();
    assert.deepEqual(tmp, []);
  });

  it('stores the first files inline and starts its worker only with the next one', async () => {
    const marker = join(tmpdir(), `kiln-put-pool-started-${process.pid}`);
    roots.push(marker);
    const { root, pool } = await poolWith(
      `import { writeFileSync } from 'node:fs';
      import { parentPort } from 'node:worker_threads';
      writeFileSync(${JSON.stringify(marker)}, '');
      parentPort.postMessage({ ready: true });`,
      3,
    );
    await fs.writeFile(join(root, 'f'), 'contents');
    const path = Buffer.from(join(root, 'f'));
    for (let i = 0; i < 3; i++) assert.equal((await pool.put(path, 8)).size, 8);
    await sleep(300);
    await assert.rejects(fs.access(marker), 'no worker after three puts');
    assert.equal((await pool.put(path, 8)).size, 8, 'inline while the worker starts');
    for (let waited = 0; waited < 5000 && !(await exists(marker)); waited += 50) await sleep(50);
    assert.ok(await exists(marker), 'the fourth put started the worker');
    await pool.close();
  });

  it('stores files inline when its worker cannot start', async () => {
    const { root, pool } = await poolWith(`throw new Error('cannot start');`);
    await fs.writeFile(join(root, 'f'), 'contents');
    for (let i = 0; i < 3; i++) {
      const result = await pool.put(Buffer.from(join(root, 'f')), 8);
      assert.ok(B3Digest.fromBytes(result.digest).equals(B3Digest.of(Buffer.from('contents'))));
      await sleep(100);
    }
    await pool.close();
  });

  it('rejects the files a dying worker held, then stores inline', async () => {
    const { root, pool } = await poolWith(`
      import { parentPort } from 'node:worker_threads';
      parentPort.on('message', () => process.exit(3));
      parentPort.postMessage({ ready: true });`);
    await fs.writeFile(join(root, 'f'), 'contents');
    const path = Buffer.from(join(root, 'f'));
    assert.equal((await pool.put(path, 8)).size, 8, 'inline while the worker starts');
    await sleep(500);
    await assert.rejects(pool.put(path, 8), (e) => isCastoreError(e, 'BACKEND_FAILURE') && /exited with code 3/.test((e as Error).message));
    assert.equal((await pool.put(path, 8)).size, 8, 'inline once no worker is left');
    await pool.close();
    assert.deepEqual(await fs.readdir(join(root, 'tmp')), []);
  });
});
