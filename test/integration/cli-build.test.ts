/**
 * `kiln build` from the outside, on real bubblewrap, runc and crun: output
 * shapes, exit statuses, limits given as options, the terminal status line,
 * and Ctrl-C leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason } from '../../src/build/testing/index.js';
import {
  buildDirsIn,
  containersUnder,
  interruptKiln,
  processesMatching,
  runtimeSkipReason,
  sandboxDir,
  shellRequest,
  tempDir,
  writeRequest,
} from './build-cli-kit.js';
import { kiln, repo, runKiln } from './run-kiln.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping kiln build CLI tests: ${skip}`);

const sampleRequest = join(repo, 'examples/hello-request.json');
const sampleInput = `sample-tree=${join(repo, 'examples/sample-tree')}`;

describe('kiln build CLI', { skip: skip ?? false }, () => {
  let work: string;
  const sandbox = sandboxDir('build');
  const bwrap = `bwrap://${sandbox}`;
  before(async () => {
    work = await tempDir('kiln-build-cli-');
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(sandbox, { recursive: true, force: true });
  });
  /** A KILN_HOME of its own for each test. */
  const freshEnv = async () => ({ KILN_HOME: await fs.mkdtemp(join(work, 'home-')) });
  const request = (script: string, extra?: Record<string, unknown>) => writeRequest(work, shellRequest(script, extra));

  it('builds the sample request with --input, names the build, prints the response as JSON and exports the output', async () => {
    const dest = join(work, 'exported');
    const env = await freshEnv();
    const result = await runKiln(['build', sampleRequest, '--input', sampleInput, '--json', '--export', dest, '--builder', bwrap], env);
    assert.equal(result.status, 0, result.stderr);
    const firstLine = result.stderr.split('\n')[0] as string;
    assert.match(firstLine, /^kiln: build blake3-[A-Za-z0-9+/]{43}= on bwrap$/);
    assert.match(result.stderr, /^building hello from \/nix\/store\/sample-tree$/m);
    assert.match(result.stderr, /^kiln: built in /m);
    assert.doesNotMatch(result.stderr, /\x1b/, 'no status line when stderr is not a terminal');

    // The proto3 JSON of snix.build.v1.BuildResponse, exactly.
    const response = JSON.parse(result.stdout);
    assert.deepEqual(Object.keys(response), ['outputs']);
    assert.equal(response.outputs.length, 1);
    assert.deepEqual(Object.keys(response.outputs[0]).sort(), ['needles', 'output']);
    assert.deepEqual(response.outputs[0].needles, ['0'], 'the refscan needle /nix/store/sample-tree is found');
    const directory = response.outputs[0].output.directory;
    assert.deepEqual(Object.keys(directory).sort(), ['digest', 'size']);
    assert.equal(Buffer.from(directory.digest, 'base64').byteLength, 32);
    assert.equal(directory.size, '5');
    assert.equal(response.outputs[0].output.directory.name, undefined, 'outputs are anonymous');

    // The output is in the store the build used.
    const ls = await runKiln(['castore', 'ls', `blake3-${directory.digest}`], env);
    assert.equal(ls.status, 0, ls.stderr);
    assert.match(ls.stdout, /share\/README\.upper/);

    assert.equal(await fs.readFile(join(dest, 'hello/bin/hello'), 'utf8'), '#!/bin/sh\nexec cat /nix/store/sample-tree/README\n');
    assert.equal(await fs.readFile(join(dest, 'hello/share/README.upper'), 'utf8'), 'KILN SAMPLE TREE: IMPORTED BY THE QUICK START.\n');
    assert.equal(await fs.readFile(join(dest, 'hello/share/files'), 'utf8'), './README\n./bin/hello\n./src/main.c\n');
    assert.deepEqual(await buildDirsIn(sandbox), []);
  });

  it('prints one line per output with the references found, without --json', async () => {
    const result = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', bwrap], await freshEnv());
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^nix\/store\/hello: blake3-\S+ directory size=5 references: \/nix\/store\/sample-tree\n$/);
  });

  it('runs the quick start command on the default builder (bwrap, installed here) and default store', async () => {
    const env = await freshEnv();
    const result = await runKiln(['build', sampleRequest, '--input', sampleInput, '--json'], env);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /^kiln: build blake3-\S+ on bwrap$/m);
    assert.deepEqual(JSON.parse(result.stdout).outputs[0].needles, ['0']);
    await fs.access(join(env.KILN_HOME, 'store'));
  });

  it('lists every builder URL form and parameter in --help', async () => {
    const result = await runKiln(['build', '--help']);
    assert.equal(result.status, 0);
    for (const text of [
      'bwrap://[/SANDBOX_DIR]',
      'oci://[/BUNDLE_ROOT]?runtime=R',
      'runc',
      'crun',
      'dummy://',
      'concurrency=N',
      'timeout=DURATION',
      'silence-timeout=DURATION',
      'memory=SIZE',
      'pids=N',
      'sandbox-dir=PATH',
      '--timeout DURATION',
      '--silence-timeout DURATION',
      '--memory SIZE',
      '--concurrency N',
      '130',
    ])
      assert.ok(result.stdout.includes(text), `help mentions ${text}`);
  });

  it('exits 1 when the build fails, saying why', async () => {
    const result = await runKiln(['build', await request('echo oops >&2; exit 7'), '--builder', bwrap], await freshEnv());
    assert.equal(result.status, 1);
    assert.match(result.stderr, /oops/);
    assert.match(result.stderr, /^error: build failed \(exit-code\): the build exited with status 7$/m);
  });

  it('exits 1 naming the signal that killed the build, and an exit status of 137 as such', async () => {
    const killed = await runKiln(['build', await request('echo about to die; kill -9 $$'), '--builder', bwrap], await freshEnv());
    assert.equal(killed.status, 1);
    assert.match(killed.stderr, /^error: build failed \(signal\): the build was killed by SIGKILL$/m);
    const exited = await runKiln(['build', await request('exit 137'), '--builder', bwrap], await freshEnv());
    assert.equal(exited.status, 1);
    assert.match(exited.stderr, /^error: build failed \(exit-code\): the build exited with status 137$/m);
  });

  it('exits 1 naming a missing output', async () => {
    const result = await runKiln(['build', await request('printf "no newline at the end"'), '--builder', bwrap], await freshEnv());
    assert.equal(result.status, 1);
    assert.match(
      result.stderr,
      /^no newline at the end\nerror: build failed \(output-missing\): output nix\/store\/result was not produced$/m,
    );
  });

  describe('limits given as options', () => {
    for (const [option, value, script, reason, message] of [
      ['--timeout', '1s', 'echo tick; sleep 30', 'timeout', /the build ran longer than 1000 ms and was killed/],
      ['--silence-timeout', '1s', 'echo started; sleep 30', 'silence-timeout', /the build wrote nothing for 1000 ms and was killed/],
      [
        '--memory',
        '64M',
        'dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived > $out',
        'out-of-memory',
        /memory limit of 67108864 bytes/,
      ],
    ] as const) {
      it(`${option} ${value} fails the build as ${reason}, exit 1`, async () => {
        const started = performance.now();
        const result = await runKiln(['build', await request(script), '--builder', bwrap, option, value], await freshEnv());
        assert.equal(result.status, 1, result.stderr);
        assert.match(result.stderr, new RegExp(`^error: build failed \\(${reason}\\): `, 'm'));
        assert.match(result.stderr, message);
        assert.doesNotMatch(result.stderr, /survived/);
        assert.ok(performance.now() - started < 15_000);
        assert.deepEqual(await buildDirsIn(sandbox), []);
      });
    }

    it('--concurrency is passed to the builder URL', async () => {
      const result = await runKiln(['build', await request('echo ok > $out'), '--builder', bwrap, '--concurrency', '1'], await freshEnv());
      assert.equal(result.status, 0, result.stderr);
    });

    it('a limit given both as an option and in the builder URL is a usage error (exit 2)', async () => {
      const result = await runKiln(['build', await request('echo ok > $out'), '--builder', `${bwrap}?timeout=5s`, '--timeout', '1s']);
      assert.equal(result.status, 2);
      assert.match(result.stderr, /^error: --timeout given twice/m);
      assert.doesNotMatch(result.stderr, /kiln: build /);
    });

    it('a malformed limit is an invalid builder URL (exit 2) naming the parameter', async () => {
      for (const [option, value] of [
        ['--timeout', '5'],
        ['--memory', 'lots'],
        ['--concurrency', '0'],
        ['--silence-timeout', '1x'],
      ]) {
        const result = await runKiln(['build', await request('echo ok > $out'), '--builder', bwrap, option as string, value as string]);
        assert.equal(result.status, 2, `${option} ${value}: ${result.stderr}`);
        assert.match(result.stderr, new RegExp(`invalid builder URL .*${(option as string).slice(2)} must be`));
      }
    });
  });

  it('on a terminal, shows a status line redrawn in place and cleared before log output', async (t) => {
    const hasScript = await new Promise<boolean>((resolve) => {
      const probe = spawn('script', ['--version'], { stdio: 'ignore' });
      probe.on('error', () => resolve(false));
      probe.on('close', (code) => resolve(code === 0));
    });
    if (!hasScript) {
      t.skip('script (util-linux) is not installed');
      return;
    }
    const path = await request('echo first; sleep 1; printf "partial "; sleep 1; echo line; sleep 0.5; echo done > $out');
    const command = `stty cols 200; exec ${kiln} build ${path} --builder ${bwrap}`;
    const env = await freshEnv();
    const output = await new Promise<{ status: number | null; text: string }>((resolve, reject) => {
      const child = spawn('script', ['-qfec', command, '/dev/null'], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('error', reject);
      child.on('close', (status) => resolve({ status, text }));
    });
    assert.equal(output.status, 0, output.text);
    const buildId = /kiln: build (blake3-\S+) on bwrap/.exec(output.text)?.[1] as string;
    assert.ok(buildId, output.text);
    const statusLines = output.text.match(/\r\x1b\[2K(blake3-[^\r\n\x1b]*)/g) ?? [];
    assert.ok(statusLines.length >= 3, `status redrawn: ${JSON.stringify(output.text)}`);
    const last = statusLines.findLast((l) => l.includes('running')) as string;
    assert.ok(last.includes(`${buildId.slice(0, 17)}… · bwrap · running · `), last);
    assert.match(last, / · [\d.]+ m?s · \d+ B of log/);
    // Log lines arrive whole: the status line is cleared before them and never drawn inside a line.
    assert.match(output.text, /\r\x1b\[2Kfirst\r?\n/);
    assert.match(output.text, /partial line\r?\n/);
    assert.ok(output.text.endsWith('\r\x1b[2K') || /\r\x1b\[2Knix\/store\/result: /.test(output.text), 'cleared at the end');
  });

  it('Ctrl-C (SIGINT) kills the bwrap sandbox within a second, exits 130 and leaves nothing behind', async (t) => {
    const marker = `kiln-sigint-bwrap-${process.pid}`;
    const sleep = `sleep ${process.pid}1`;
    const result = await interruptKiln(
      ['build', await request(`${sleep} & echo started-${marker}; wait; echo ${marker} > $out`), '--builder', bwrap],
      await freshEnv(),
      `started-${marker}`,
      () => ({ processes: processesMatching(`${marker}|${sleep}`), containers: [] }),
    );
    assert.ok(result.whileRunning.processes.length >= 2, `the sandbox ran: ${result.whileRunning.processes}`);
    assert.equal(result.status, 130, result.stderr);
    assert.match(result.stderr, /^error: interrupted$/m);
    assert.ok(result.exitMs < 1500, `exited ${result.exitMs} ms after SIGINT`);
    t.diagnostic(`exited ${Math.round(result.exitMs)} ms after SIGINT`);
    assert.deepEqual(processesMatching(`${marker}|${sleep}`), []);
    assert.deepEqual(await buildDirsIn(sandbox), []);
  });
});

for (const runtime of ['runc', 'crun'] as const) {
  const skipOci = skip ?? runtimeSkipReason(runtime);
  if (skipOci) console.log(`# skipping kiln build CLI tests on ${runtime}: ${skipOci}`);

  describe(`kiln build CLI on oci://?runtime=${runtime}`, { skip: skipOci ?? false }, () => {
    let work: string;
    const sandbox = sandboxDir(runtime);
    const builder = `oci://?runtime=${runtime}&sandbox-dir=${sandbox}`;
    before(async () => {
      work = await tempDir(`kiln-build-cli-${runtime}-`);
    });
    after(async () => {
      await fs.rm(work, { recursive: true, force: true });
      await fs.rm(sandbox, { recursive: true, force: true });
    });
    const freshEnv = async () => ({ KILN_HOME: await fs.mkdtemp(join(work, 'home-')) });

    it('builds the sample request to the same response as bwrap', async () => {
      const oci = await runKiln(['build', sampleRequest, '--input', sampleInput, '--json', '--builder', builder], await freshEnv());
      assert.equal(oci.status, 0, oci.stderr);
      assert.match(oci.stderr, new RegExp(`^kiln: build blake3-\\S+ on oci\\(${runtime}\\)$`, 'm'));
      const sandboxBwrap = sandboxDir(`${runtime}-bwrap`);
      try {
        const reference = await runKiln(
          ['build', sampleRequest, '--input', sampleInput, '--json', '--builder', `bwrap://${sandboxBwrap}`],
          await freshEnv(),
        );
        assert.equal(reference.status, 0, reference.stderr);
        assert.deepEqual(JSON.parse(oci.stdout), JSON.parse(reference.stdout));
        assert.deepEqual(JSON.parse(oci.stdout).outputs[0].needles, ['0']);
      } finally {
        await fs.rm(sandboxBwrap, { recursive: true, force: true });
      }
      assert.deepEqual(await buildDirsIn(sandbox), []);
      assert.deepEqual(containersUnder(runtime, sandbox), []);
    });

    it(`Ctrl-C (SIGINT) kills the ${runtime} container within a second, exits 130 and leaves nothing behind`, async (t) => {
      const marker = `kiln-sigint-${runtime}-${process.pid}`;
      const sleep = `sleep ${process.pid}2`;
      const path = await writeRequest(work, shellRequest(`${sleep} & echo started-${marker}; wait; echo ${marker} > $out`));
      const result = await interruptKiln(['build', path, '--builder', builder], await freshEnv(), `started-${marker}`, () => ({
        processes: processesMatching(`${marker}|${sleep}`),
        containers: containersUnder(runtime, sandbox),
      }));
      assert.ok(result.whileRunning.processes.length >= 2, `the sandbox ran: ${result.whileRunning.processes}`);
      assert.equal(result.whileRunning.containers.length, 1, `${runtime} list showed the build's container`);
      assert.equal(result.status, 130, result.stderr);
      assert.match(result.stderr, /^error: interrupted$/m);
      assert.ok(result.exitMs < 1500, `exited ${result.exitMs} ms after SIGINT`);
      t.diagnostic(`exited ${Math.round(result.exitMs)} ms after SIGINT`);
      assert.deepEqual(processesMatching(`${marker}|${sleep}`), []);
      assert.deepEqual(await buildDirsIn(sandbox), []);
      assert.deepEqual(containersUnder(runtime, sandbox), [], `${runtime} list is empty of this build`);
    });
  });
}
