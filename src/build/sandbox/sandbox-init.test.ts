import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { findExecutable } from './find-executable.js';
import { Launcher, type LaunchResult } from './launcher.js';
import { KILN_SANDBOX_INIT, nativeProgram } from './native-programs.js';
import { commandExit } from './sandbox-init.js';

type InitRun = LaunchResult & { stdout: string; stderr: string };

/**
 * Runs `kiln-sandbox-init 3 ...command` through the launcher with a status
 * pipe at fd 3 (outside any sandbox); `init` is the program and what runs it.
 */
async function underInit(init: readonly string[], command: string[]): Promise<InitRun> {
  const output = { stdout: '', stderr: '' };
  const launched = await Launcher.shared().launch({
    argv: [...init, '3', ...command],
    statusPipe: true,
    onOutput: (stream, data) => {
      output[stream] += data.toString();
    },
  });
  return { ...(await launched.exited), ...output };
}

/**
 * The init built for aarch64 with the very flags Kiln builds it with, run by
 * qemu-user; the commands it starts are this machine's own (qemu hands
 * `execve` to the kernel). A reason to skip when the cross compiler or qemu
 * is missing.
 */
function aarch64Init(): { init: string[] } | { skip: string } {
  const cc = findExecutable('aarch64-linux-gnu-gcc');
  const qemu = findExecutable('qemu-aarch64-static') ?? findExecutable('qemu-aarch64');
  if (!cc || !qemu) return { skip: 'needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu, qemu-user-static)' };
  const dir = mkdtempSync(join(tmpdir(), 'kiln-init-aarch64-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const binary = join(dir, 'kiln-sandbox-init');
  execFileSync(cc, [...KILN_SANDBOX_INIT.compilerFlags, '-o', binary, KILN_SANDBOX_INIT.source]);
  return { init: [qemu, binary] };
}

const builds: { name: string; init: () => { init: string[] } | { skip: string } }[] = [
  { name: 'this machine', init: () => ({ init: [nativeProgram(KILN_SANDBOX_INIT)] }) },
  { name: 'aarch64, under qemu-user', init: aarch64Init },
];

for (const build of builds) {
  const prepared = build.init();
  if ('skip' in prepared) console.log(`# skipping kiln-sandbox-init (${build.name}): ${prepared.skip}`);
  describeInit(build.name, 'skip' in prepared ? undefined : prepared.init);
}

function describeInit(name: string, init: string[] | undefined): void {
  const options = init ? {} : { skip: 'not available here (see above)' };
  const run = (command: string[]) => underInit(init as string[], command);
  describe(`kiln-sandbox-init (${name})`, options, () => {
    it('reports death by a signal, which its own exit status (128 + n) cannot tell from an exit', async () => {
      const killed = await run(['/bin/sh', '-c', 'echo dying; kill -KILL $$']);
      assert.deepEqual([killed.code, killed.signal], [137, null], 'exits as a shell would');
      assert.deepEqual(killed.reported, { code: null, signal: 'SIGKILL' });
      assert.equal(killed.stdout, 'dying\n');
      const exited = await run(['/bin/sh', '-c', 'exit 137']);
      assert.deepEqual([exited.code, exited.reported], [137, { code: 137, signal: null }]);
      const ok = await run(['/bin/true']);
      assert.deepEqual([ok.code, ok.reported], [0, { code: 0, signal: null }]);
    });

    it('gives the command fds 0, 1, 2 only, and looks a bare name up on PATH', async () => {
      const fds = 'for fd in $(seq 0 1100); do [ -e /proc/$$/fd/$fd ] && printf "%s " $fd; done; echo';
      const result = await run(['sh', '-c', fds]);
      assert.equal(result.stdout, '0 1 2 \n');
      assert.equal(result.reported?.code, 0);
    });

    it('exits 127 naming a command it cannot run', async () => {
      const result = await run(['no-such-command-anywhere']);
      assert.deepEqual([result.code, result.reported], [127, { code: 127, signal: null }]);
      assert.match(result.stderr, /kiln-sandbox-init: cannot run no-such-command-anywhere: No such file or directory\n/);
      const usage = await run([]);
      assert.equal(usage.code, 127);
      assert.match(usage.stderr, /usage: kiln-sandbox-init STATUS_FD COMMAND/);
    });
  });
}

describe('commandExit', () => {
  it('takes what the init reported only when the runtime’s status agrees with it', () => {
    const signal = { code: null, signal: 'SIGKILL' as const };
    assert.deepEqual(commandExit({ code: 137, signal: null, reported: signal }), signal);
    assert.deepEqual(commandExit({ code: 137, signal: null, reported: { code: 137, signal: null } }), { code: 137, signal: null });
    // A report the runtime's status contradicts (forged, or the runtime failed on its own) is not believed.
    assert.deepEqual(commandExit({ code: 1, signal: null, reported: signal }), { code: 1, signal: null, reported: signal });
    assert.deepEqual(commandExit({ code: 0, signal: null, reported: { code: 3, signal: null } }).code, 0);
    assert.deepEqual(commandExit({ code: null, signal: 'SIGKILL' }), { code: null, signal: 'SIGKILL' });
  });
});
