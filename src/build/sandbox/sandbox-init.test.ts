import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Launcher, type LaunchResult } from './launcher.js';
import { KILN_SANDBOX_INIT, nativeProgram } from './native-programs.js';
import { commandExit } from './sandbox-init.js';

/** Runs `kiln-sandbox-init 3 ...command` through the launcher with a status pipe at fd 3 (outside any sandbox). */
async function underInit(command: string[]): Promise<LaunchResult & { stdout: string; stderr: string }> {
  const output = { stdout: '', stderr: '' };
  const launched = await Launcher.shared().launch({
    argv: [nativeProgram(KILN_SANDBOX_INIT), '3', ...command],
    statusPipe: true,
    onOutput: (stream, data) => {
      output[stream] += data.toString();
    },
  });
  return { ...(await launched.exited), ...output };
}

describe('kiln-sandbox-init', () => {
  it('reports death by a signal, which its own exit status (128 + n) cannot tell from an exit', async () => {
    const killed = await underInit(['/bin/sh', '-c', 'echo dying; kill -KILL $$']);
    assert.deepEqual([killed.code, killed.signal], [137, null], 'exits as a shell would');
    assert.deepEqual(killed.reported, { code: null, signal: 'SIGKILL' });
    assert.equal(killed.stdout, 'dying\n');
    const exited = await underInit(['/bin/sh', '-c', 'exit 137']);
    assert.deepEqual([exited.code, exited.reported], [137, { code: 137, signal: null }]);
    const ok = await underInit(['/bin/true']);
    assert.deepEqual([ok.code, ok.reported], [0, { code: 0, signal: null }]);
  });

  it('gives the command fds 0, 1, 2 only, and looks a bare name up on PATH', async () => {
    const fds = 'for fd in $(seq 0 1100); do [ -e /proc/$$/fd/$fd ] && printf "%s " $fd; done; echo';
    const result = await underInit(['sh', '-c', fds]);
    assert.equal(result.stdout, '0 1 2 \n');
    assert.equal(result.reported?.code, 0);
  });

  it('exits 127 naming a command it cannot run', async () => {
    const result = await underInit(['no-such-command-anywhere']);
    assert.deepEqual([result.code, result.reported], [127, { code: 127, signal: null }]);
    assert.match(result.stderr, /kiln-sandbox-init: cannot run no-such-command-anywhere: No such file or directory\n/);
    const usage = await underInit([]);
    assert.equal(usage.code, 127);
    assert.match(usage.stderr, /usage: kiln-sandbox-init STATUS_FD COMMAND/);
  });
});

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
