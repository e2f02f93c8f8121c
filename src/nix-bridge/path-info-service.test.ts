import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { B3Digest, directoryNode, fileNode, symlinkNode } from '../castore/index.js';
import { contentAddress, hashBytes, StorePath } from '../nix/index.js';
import { LmdbPathInfoService } from './lmdb-path-info-service.js';
import { type PathInfo, pathInfoFromJson, pathInfoToJson } from './path-info.js';
import { MemoryPathInfoService, type PathInfoService } from './path-info-service.js';

const digest = B3Digest.of(new Uint8Array([1, 2, 3]));

function info(i: number, extra: Partial<PathInfo> = {}): PathInfo {
  const hash = hashBytes('sha256', `path ${i}`);
  return {
    storePath: StorePath.fromParts(hashBytes('sha1', `path ${i}`).digest, `p-${i}`),
    node: i % 3 === 0 ? directoryNode(digest, 7) : i % 3 === 1 ? fileNode(digest, 3, i % 2 === 0) : symlinkNode('/nix/store/x'),
    narHash: hash,
    narSize: 100 + i,
    references: [],
    deriver: '/nix/store/00000000000000000000000000000000-d.drv',
    ...extra,
  };
}

for (const [label, open] of [
  ['memory', async () => new MemoryPathInfoService()],
  ['lmdb', async (dir: string) => LmdbPathInfoService.open(join(dir, 'nix-path-info.mdb'))],
] as const) {
  describe(`${label} PathInfoService`, () => {
    let dir: string;
    let service: PathInfoService;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kiln-path-info-'));
      service = await open(dir);
    });
    after(async () => {
      await service.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('stores and returns records; a path sharing a hash part but not the name is absent', async () => {
      const a = info(1, {
        ca: contentAddress('nar', hashBytes('sha256', 'x')),
        references: ['/nix/store/00000000000000000000000000000000-d'],
      });
      await service.putMany([a, info(2), info(3)]);
      const got = await service.get(a.storePath.toAbsolute());
      assert.deepEqual(got && pathInfoToJson(got), pathInfoToJson(a));
      assert.equal(await service.get(`/nix/store/${a.storePath.hashPart}-other`), undefined);
      assert.equal(await service.get(info(99).storePath.toAbsolute()), undefined);
      const listed = [];
      for await (const i of service.list()) listed.push(i.storePath.hashPart);
      assert.deepEqual(listed, [...listed].sort());
      assert.equal(listed.length, 3);
    });
  });
}

describe('path info JSON', () => {
  it('round-trips, and rejects broken records', () => {
    const a = info(4, { ca: contentAddress('flat', hashBytes('sha1', 'y')) });
    assert.deepEqual(pathInfoToJson(pathInfoFromJson(pathInfoToJson(a))), pathInfoToJson(a));
    const json = pathInfoToJson(a);
    for (const broken of [
      { ...json, narHash: 'md5:00' },
      { ...json, narSize: -1 },
      { ...json, path: '/nix/store/x' },
      { ...json, references: ['/tmp/x'] },
      { ...json, entry: {} },
    ]) {
      assert.throws(() => pathInfoFromJson(broken), { code: 'INVALID_PATH_INFO' });
    }
  });
});

describe('LmdbPathInfoService durability', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kiln-path-info-kill-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a writer killed during putMany leaves all of a batch or none of it, and what was committed survives reopening', async () => {
    const db = join(dir, 'nix-path-info.mdb');
    const script = `
      import { LmdbPathInfoService } from ${JSON.stringify(join(import.meta.dirname, 'lmdb-path-info-service.ts'))};
      import { B3Digest, fileNode } from ${JSON.stringify(join(import.meta.dirname, '../castore/index.ts'))};
      import { hashBytes, StorePath } from ${JSON.stringify(join(import.meta.dirname, '../nix/index.ts'))};
      const service = LmdbPathInfoService.open(${JSON.stringify(db)});
      const node = fileNode(B3Digest.of(new Uint8Array([1])), 1);
      for (let batch = 0; ; batch++) {
        const infos = Array.from({ length: 500 }, (_, i) => ({
          storePath: StorePath.fromParts(hashBytes('sha1', batch + ':' + i).digest, 'p'),
          node, narHash: hashBytes('sha256', 'x'), narSize: 1, references: [],
        }));
        await service.putMany(infos);
        process.stdout.write('.');
      }`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let committed = 0;
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        committed += d.length;
        if (committed >= 3) {
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((resolve) => child.once('close', resolve));
    const service = LmdbPathInfoService.open(db);
    try {
      let n = 0;
      for await (const _ of service.list()) n++;
      assert.equal(n % 500, 0, `${n} records: a partial batch is visible`);
      assert.ok(n >= committed * 500, `${n} records, but ${committed} batches were reported committed`);
    } finally {
      await service.close();
    }
  });
});
