import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Launcher, type LaunchOptions } from './launcher.js';

async function run(options: Omit<LaunchOptions, 'onOutput'>) {
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const launched = await Launcher.shared().launch({ ...options, onOutput: (stream, data) => chunks[stream].push(data) });
  const result = await launched.exited;
  const stdoutBytes = Buffer.concat(chunks.stdout);
  const stderrBytes = Buffer.concat(chunks.stderr);
  return { ...result, stdoutBytes, stderrBytes, stdout: stdoutBytes.toString(), stderr: stderrBytes.toString(), pid: launched.pid };
}

describe('kiln-launcher', () => {
  it('passes fd contents, relays both streams and reports the exit status', async () => {
    const result = await run({
      argv: ['/bin/sh', '-c', 'cat <&3; cat <&4 >&2; exit 7'],
      inputFds: [Buffer.from('three\n'), Buffer.from([0, 1, 2, 255])],
    });
    assert.equal(result.code, 7);
    assert.equal(result.signal, null);
    assert.equal(result.stdout, 'three\n');
    assert.deepEqual(result.stderrBytes, Buffer.from([0, 1, 2, 255]));
  });

  it('delivers a large output whole and in order', async () => {
    const bytes = 24 * 1024 * 1024;
    const hash = createHash('sha256');
    let size = 0;
    const launched = await Launcher.shared().launch({
      argv: ['/bin/sh', '-c', `head -c ${bytes} /dev/zero | tr '\\0' a; echo done >&2`],
      onOutput(stream, data) {
        if (stream !== 'stdout') return;
        hash.update(data);
        size += data.byteLength;
      },
    });
    assert.equal((await launched.exited).code, 0);
    assert.equal(size, bytes);
    assert.equal(hash.digest('hex'), createHash('sha256').update(Buffer.alloc(bytes, 'a')).digest('hex'));
  });

  it('runs as the given uid and gid with no supplementary groups, in a session of its own', async () => {
    const result = await run({ argv: ['/bin/sh', '-c', 'id -u; id -g; id -G; cut -d" " -f6 /proc/$$/stat'], uid: 65534, gid: 65534 });
    assert.equal(result.code, 0, result.stderr);
    const [uid, gid, groups, session] = result.stdout.trim().split('\n');
    assert.deepEqual([uid, gid, groups], ['65534', '65534', '65534']);
    assert.equal(Number(session), result.pid, 'the process leads its own session');
  });

  it('gives a child fds 0, 1, 2 and its own fds only, nothing Kiln has open without close-on-exec', async () => {
    // A Kiln process that inherited fds 3 and 4 (as one does a database file some library opened without O_CLOEXEC).
    const launcherModule = fileURLToPath(new URL('./launcher.ts', import.meta.url));
    const script = `
      const { Launcher } = await import(${JSON.stringify(launcherModule)});
      // The shell's own open fds, tested one by one with a builtin (a pipeline or glob would open some).
      const FDS = 'for fd in $(seq 0 1100); do [ -e /proc/$$/fd/$fd ] && printf "%s " $fd; done; true';
      for (const inputFds of [[], [Buffer.from('x')]]) {
        let out = '';
        const child = await Launcher.shared().launch({ argv: ['/bin/sh', '-c', FDS], inputFds,
          onOutput: (stream, data) => { out += data; } });
        await child.exited;
        process.stdout.write(out + '\\n');
      }
      process.exit(0);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    } as object);
    assert.deepEqual(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.trim()),
      ['0 1 2', '0 1 2 3'],
    );
  });

  it('reports death by a signal by name', async () => {
    const result = await run({ argv: ['/bin/sh', '-c', 'kill -TERM $$'] });
    assert.deepEqual([result.code, result.signal], [null, 'SIGTERM']);
  });

  it('exits 127 naming a program it cannot run', async () => {
    const result = await run({ argv: ['/nonexistent/kiln-program'] });
    assert.equal(result.code, 127);
    assert.match(result.stderr, /cannot run \/nonexistent\/kiln-program: No such file/);
  });

  it('joins the cgroups it is given before the program runs, and exits 125 naming one it cannot join', async (t) => {
    const own = readFileSync('/proc/self/cgroup', 'utf8').match(/^\d+:pids:(.*)$/m)?.[1];
    if (own === undefined) return t.skip('no cgroup v1 pids hierarchy');
    const dir = join('/sys/fs/cgroup/pids', own, `kiln-launcher-test-${process.pid}`);
    mkdirSync(dir);
    try {
      const joined = await run({ argv: ['/bin/sh', '-c', 'grep :pids: /proc/self/cgroup'], joinCgroups: [join(dir, 'tasks')] });
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(joined.stdout, new RegExp(`:pids:.*/kiln-launcher-test-${process.pid}$`, 'm'));
      const missing = join(dir, 'no-such-cgroup', 'tasks');
      const failed = await run({ argv: ['/bin/true'], joinCgroups: [missing] });
      assert.equal(failed.code, 125);
      assert.ok(failed.stderr.includes(`cannot join cgroup ${missing}`), failed.stderr);
    } finally {
      rmdirSync(dir);
    }
  });

  it('does not keep an idle process alive, and takes its children with it when that process dies', async () => {
    const launcherModule = fileURLToPath(new URL('./launcher.ts', import.meta.url));
    const script = `
      const { Launcher } = await import(${JSON.stringify(launcherModule)});
      // The shell's own open fds, tested one by one with a builtin (a pipeline or glob would open some).
      const FDS = 'for fd in $(seq 0 1100); do [ -e /proc/$$/fd/$fd ] && printf "%s " $fd; done; true';
      await (await Launcher.shared().launch({ argv: ['/bin/true'] })).exited;
      if (process.argv[1] === 'orphan') {
        const sleeper = await Launcher.shared().launch({ argv: ['/bin/sleep', '60'] });
        console.log(sleeper.pid);
        process.kill(process.pid, 'SIGKILL');
      }`;
    const node = (mode: string) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, mode], { timeout: 20_000 }).catch(
        (error: { stdout?: string; signal?: string }) => error,
      );
    const idle = await node('idle');
    assert.ok(!('signal' in idle && idle.signal), 'an idle launcher lets the process exit by itself');
    const killed = await node('orphan');
    const sleeper = Number(killed.stdout?.trim());
    assert.ok(sleeper > 0, `the child's pid was printed: ${killed.stdout}`);
    const deadline = Date.now() + 2000;
    while (existsSync(`/proc/${sleeper}`) && !readFileSync(`/proc/${sleeper}/stat`, 'utf8').includes(') Z ') && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(!existsSync(`/proc/${sleeper}`) || readFileSync(`/proc/${sleeper}/stat`, 'utf8').includes(') Z '), 'the child is gone');
  });
});
