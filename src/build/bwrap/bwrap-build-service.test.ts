import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { B3Digest, importPath, MemoryBlobService, MemoryDirectoryService, parsePathComponent } from '../../castore/index.js';
import { concatBytes } from '../../common/async-iterable.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import { bwrapSkipReason } from '../testing/index.js';
import { BwrapBuildService } from './bwrap-build-service.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping BwrapBuildService: ${skip}`);

describe('BwrapBuildService', { skip: skip ?? false }, () => {
  const blobService = new MemoryBlobService();
  const directoryService = new MemoryDirectoryService();
  let sandboxDir: string;
  let service: BwrapBuildService;
  let inputDir: string;
  before(async () => {
    sandboxDir = await fs.mkdtemp('/var/tmp/kiln-bwrap-test-');
    inputDir = join(sandboxDir, 'src-input');
    await fs.mkdir(inputDir);
    await fs.writeFile(join(inputDir, 'greeting'), 'hello from an input\n');
    service = new BwrapBuildService({ blobService, directoryService, sandboxDir, concurrency: 2 });
  });
  after(async () => {
    await fs.rm(sandboxDir, { recursive: true, force: true });
  });

  async function request(script: string, extra: Partial<BuildRequest> = {}): Promise<BuildRequest> {
    const input = await importPath(inputDir, { blobService, directoryService });
    return {
      inputs: [{ name: parsePathComponent('abc-input'), node: input.node }],
      commandArgs: ['/bin/sh', '-c', script],
      workingDir: 'build',
      scratchPaths: ['build', 'nix/store'],
      inputsDir: 'nix/store',
      outputs: ['nix/store/out'],
      environmentVars: [
        { key: 'GREETING', value: new TextEncoder().encode('hi there') },
        { key: 'out', value: new TextEncoder().encode('/nix/store/out') },
      ],
      constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true },
      additionalFiles: [],
      refscanNeedles: ['abc-input', 'not-there'],
      ...extra,
    };
  }

  async function run(req: BuildRequest, signal?: AbortSignal): Promise<BuildEvent[]> {
    const events: BuildEvent[] = [];
    for await (const event of service.build(req, signal ? { signal } : {})) events.push(event);
    return events;
  }
  const logText = (events: BuildEvent[]) => events.flatMap((e) => (e.type === 'log' ? [Buffer.from(e.data).toString()] : [])).join('');

  it('runs as uid 1000 with exactly the requested environment, writes an output and finds references', async () => {
    const events = await run(
      await request('id -u; id -g; hostname; env | sort; cat /nix/store/abc-input/greeting > $out; echo /nix/store/abc-input >> $out'),
    );
    const last = events.at(-1);
    assert.equal(last?.type, 'finished', logText(events));
    assert.equal(events[0]?.type, 'accepted');
    const log = logText(events);
    assert.match(log, /^1000\n100\nlocalhost\n/);
    assert.match(log, /GREETING=hi there\n/);
    assert.doesNotMatch(log, /HOME=|USER=/);
    if (last?.type !== 'finished') return;
    const output = last.response.outputs[0];
    assert.equal(output?.node.type, 'file');
    assert.deepEqual(output?.needles, [0]);
    if (output?.node.type === 'file') {
      const stream = await blobService.read(output.node.digest);
      assert.equal(Buffer.from(await concatBytes(stream ?? [])).toString(), 'hello from an input\n/nix/store/abc-input\n');
    }
  });

  it('keeps inputs and the root read-only and has no network', async () => {
    const events = await run(
      await request('touch /nix/store/abc-input/x 2>&1; touch /x 2>&1; cat /proc/net/dev | grep -c : ; echo ok > $out'),
    );
    assert.equal(events.at(-1)?.type, 'finished', logText(events));
    const log = logText(events);
    assert.equal((log.match(/Read-only file system/g) ?? []).length, 2, log);
    assert.match(log, /^1$/m, 'only the loopback interface');
  });

  it('reports a non-zero exit with its status and the log tail', async () => {
    const events = await run(await request('echo about to fail; exit 3'));
    const last = events.at(-1);
    assert.equal(last?.type, 'failed');
    if (last?.type === 'failed') {
      assert.equal(last.reason, 'exit-code');
      assert.equal(last.exitCode, 3);
      assert.match(last.logTail, /about to fail/);
    }
  });

  it('fails naming a missing output', async () => {
    const last = (await run(await request('true'))).at(-1);
    assert.equal(last?.type, 'failed');
    if (last?.type === 'failed') {
      assert.equal(last.reason, 'output-missing');
      assert.match(last.message, /nix\/store\/out/);
    }
  });

  it('abort kills the build within a second and leaves no build directory', async () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    const started = performance.now();
    setTimeout(() => controller.abort(reason), 300);
    await assert.rejects(run(await request('sleep 30; echo late > $out'), controller.signal), (e) => e === reason);
    assert.ok(performance.now() - started < 1300, `took ${performance.now() - started} ms`);
    const left = (await fs.readdir(sandboxDir)).filter((n) => n.startsWith('build-'));
    assert.deepEqual(left, []);
    assert.equal(spawnSync('pgrep', ['-f', 'sleep 30']).status, 1, 'no sleep process survives');
  });

  it('every log byte arrives in order with running offsets', async () => {
    const events = await run(await request('i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done; echo done > $out'));
    let expected = 0;
    let text = '';
    for (const e of events) {
      if (e.type !== 'log' || e.stream !== 'stdout') continue;
      assert.equal(e.offset, expected);
      expected += e.data.byteLength;
      text += Buffer.from(e.data).toString();
    }
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 2000);
    assert.equal(lines[1999], 'line 1999');
    void B3Digest;
  });

  it('reports cpu time and peak memory', async () => {
    const events = await run(await request('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i > $out'));
    const resources = events.find((e) => e.type === 'resources');
    assert.ok(resources && resources.type === 'resources');
    assert.ok(resources.cpuTimeMs > 0 && resources.peakMemoryBytes > 0, JSON.stringify(resources));
    const last = events.at(-1);
    assert.ok(last?.type === 'finished' && last.cpuTimeMs === resources.cpuTimeMs);
  });

  it('a build over its memory limit fails as out-of-memory', async () => {
    const limited = new BwrapBuildService({ blobService, directoryService, sandboxDir, memoryLimitBytes: 64 * 1024 * 1024 });
    const events: BuildEvent[] = [];
    for await (const e of limited.build(await request('dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived > $out')))
      events.push(e);
    const last = events.at(-1);
    assert.equal(last?.type, 'failed', logText(events));
    if (last?.type === 'failed') assert.equal(last.reason, 'out-of-memory');
  });

  it('a fork bomb hits the process limit and the build still ends cleanly', async () => {
    const limited = new BwrapBuildService({ blobService, directoryService, sandboxDir, pidsLimit: 32 });
    const events: BuildEvent[] = [];
    const script = 'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done; echo spawned > $out';
    for await (const e of limited.build(await request(script))) events.push(e);
    assert.match(logText(events), /can't fork|Resource temporarily unavailable|fork/i);
    assert.equal(spawnSync('pgrep', ['-f', 'sleep 5']).status, 1, 'no process of the build survives it');
  });

  for (const [kind, options, script] of [
    ['timeout', { timeoutMs: 500 }, 'while true; do echo tick; sleep 0.1; done'],
    ['silence-timeout', { silenceTimeoutMs: 500 }, 'echo started; sleep 30'],
  ] as const) {
    it(`a build past its ${kind} is killed and fails as ${kind}`, async () => {
      const limited = new BwrapBuildService({ blobService, directoryService, sandboxDir, ...options });
      const started = performance.now();
      const events: BuildEvent[] = [];
      for await (const e of limited.build(await request(script))) events.push(e);
      const last = events.at(-1);
      assert.equal(last?.type, 'failed');
      if (last?.type === 'failed') assert.equal(last.reason, kind);
      assert.ok(performance.now() - started < 3000, `took ${performance.now() - started} ms`);
      assert.equal(spawnSync('pgrep', ['-f', 'sleep 30']).status, 1, 'nothing survives');
    });
  }

  it('rejects a request needing more memory than the host has', async () => {
    const huge = await request('true', {
      constraints: { system: 'x86_64-linux', minMemory: 2 ** 52, availableRoPaths: [], networkAccess: false, provideBinSh: true },
    });
    await assert.rejects(run(huge), (e) => (e as { code?: string }).code === 'CONSTRAINTS_UNMET');
  });
});
