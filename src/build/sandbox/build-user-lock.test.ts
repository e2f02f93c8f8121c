import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { lockBuildUser } from './build-user-lock.js';

describe('lockBuildUser', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  });
  async function lockDir(): Promise<string> {
    const dir = await fs.mkdtemp(join(tmpdir(), 'kiln-locks-'));
    dirs.push(dir);
    return dir;
  }

  it('hands out distinct uids until none is left, and reuses released ones', async () => {
    const dir = await lockDir();
    const a = await lockBuildUser(dir, 40_000, 2);
    const b = await lockBuildUser(dir, 40_000, 2);
    assert.deepEqual([a?.uid, b?.uid], [40_000, 40_001]);
    assert.equal(await lockBuildUser(dir, 40_000, 2), undefined);
    await a?.release();
    assert.equal((await lockBuildUser(dir, 40_000, 2))?.uid, 40_000);
  });

  it('takes over a lock whose owner process is gone, but not a live one', async () => {
    const dir = await lockDir();
    await fs.writeFile(join(dir, 'uid-40000'), '999999999');
    await fs.writeFile(join(dir, 'uid-40001'), String(process.ppid));
    const lock = await lockBuildUser(dir, 40_000, 2);
    assert.equal(lock?.uid, 40_000);
    assert.equal(await fs.readFile(join(dir, 'uid-40000'), 'utf8'), String(process.pid));
    assert.equal(await lockBuildUser(dir, 40_000, 2), undefined);
  });
});
