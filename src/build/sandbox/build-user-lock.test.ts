import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { buildUserHeld, lockBuildUser } from './build-user-lock.js';

// Uids far from the builders' defaults, so tests running at the same time do not meet.
const BASE = 47_000 + (process.pid % 500) * 16;

describe('lockBuildUser', () => {
  it('hands out distinct uids until none is left, and reuses released ones', async () => {
    const a = await lockBuildUser(BASE, 2);
    const b = await lockBuildUser(BASE, 2);
    try {
      assert.deepEqual([a?.uid, b?.uid], [BASE, BASE + 1]);
      assert.equal(await lockBuildUser(BASE, 2), undefined);
      assert.equal(await buildUserHeld(BASE), true);
      await a?.release();
      assert.equal(await buildUserHeld(BASE), false);
      const again = await lockBuildUser(BASE, 2);
      assert.equal(again?.uid, BASE);
      await again?.release();
    } finally {
      await b?.release();
    }
  });

  it('a uid held by another process is skipped, and free again the moment that process dies', async () => {
    const uid = BASE + 2;
    // Another process takes the lock the way Kiln does, then waits to be killed.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createServer } from 'node:net';
         createServer().listen('\\0kiln-build-user-${uid}', () => console.log('held'));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await once(holder.stdout, 'data');
    try {
      assert.equal(await buildUserHeld(uid), true);
      const lock = await lockBuildUser(uid, 2);
      assert.equal(lock?.uid, uid + 1);
      await lock?.release();
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }
    assert.equal(await buildUserHeld(uid), false, 'no stale lock after a SIGKILL');
    const lock = await lockBuildUser(uid, 2);
    assert.equal(lock?.uid, uid);
    await lock?.release();
  });

  it('many concurrent takers never share a uid', async () => {
    const base = BASE + 4;
    const locks = await Promise.all(Array.from({ length: 12 }, () => lockBuildUser(base, 8)));
    const uids = locks.filter((l) => l !== undefined).map((l) => l.uid);
    assert.equal(uids.length, 8);
    assert.equal(new Set(uids).size, 8);
    assert.equal(locks.filter((l) => l === undefined).length, 4);
    await Promise.all(locks.map((l) => l?.release()));
  });
});
