/**
 * The sandbox contract of build-service.ts as one test suite, run against
 * every local backend (bwrap, oci runc, oci crun) by its own test file:
 * what a build sees, what comes back, limits, cancellation, and an escape
 * suite (each attack is contained: the build succeeds with the attack
 * failed inside, or fails cleanly, and the host is unchanged). After every
 * test, nothing of the build may be left: no process of a build user, no
 * build directory, no container.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  type BlobService,
  type DirectoryService,
  type FileNode,
  importPath,
  MemoryBlobService,
  MemoryDirectoryService,
  type Node,
  openFsCastore,
  parsePathComponent,
} from '../../castore/index.js';
import { concatBytes } from '../../common/async-iterable.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService, SandboxLimits } from '../build-service.js';
import { etcFiles } from '../sandbox/nix-compatible-etc.js';

export interface SandboxConformanceOptions {
  /** A service building in `sandboxDir` with `limits`. */
  create(deps: { blobService: BlobService; directoryService: DirectoryService; sandboxDir: string } & SandboxLimits): BuildService;
  /** Why the backend cannot run here; the suite is skipped with this printed. */
  skip?: string;
  /** Containers the runtime still lists whose bundle lies in `sandboxDir` (for the nothing-left-behind check). */
  listContainers?(sandboxDir: string): string[];
  /** Where a service's outputs are stored; default the store it was created with. */
  outputBlobService?(service: BuildService): Promise<BlobService>;
  /**
   * How long cleanup may take after a build's iterator settles (a remote
   * builder tears down after its client has moved on); default 0: local
   * backends remove everything before the iterator settles.
   */
  settleMs?: number;
}

const encoder = new TextEncoder();
const INPUT = 'abc-tools';
const BB = `/nix/store/${INPUT}/busybox`;

export function sandboxConformance(name: string, options: SandboxConformanceOptions): void {
  if (options.skip) console.log(`# skipping the sandbox suite for ${name}: ${options.skip}`);
  describe(`sandbox conformance: ${name}`, { skip: options.skip ?? false }, () => {
    const blobService = new MemoryBlobService();
    const directoryService = new MemoryDirectoryService();
    let sandboxDir: string;
    let toolsNode: Node;
    let service: BuildService;
    let sentinel: string;
    const marker = randomUUID();
    before(async () => {
      sandboxDir = await fs.mkdtemp('/var/tmp/kiln-conformance-');
      const tools = join(sandboxDir, 'src-tools');
      await fs.mkdir(tools);
      await fs.copyFile('/bin/busybox', join(tools, 'busybox'));
      await fs.chmod(join(tools, 'busybox'), 0o755);
      await fs.writeFile(join(tools, 'greeting'), 'hello from an input\n');
      toolsNode = (await importPath(tools, { blobService, directoryService })).node;
      sentinel = join(sandboxDir, 'host-sentinel');
      await fs.writeFile(sentinel, 'host data\n', { mode: 0o644 });
      service = make();
    });
    after(async () => {
      for (const created of services) await created.close();
      await fs.rm(sandboxDir, { recursive: true, force: true });
    });
    afterEach(async () => {
      const deadline = performance.now() + (options.settleMs ?? 0);
      const leftovers = async () => ({
        processes: suiteProcesses(marker),
        buildDirs: (await fs.readdir(sandboxDir)).filter((n) => n.startsWith('build-')),
        scratchContents: await keptScratchContents(sandboxDir),
        containers: options.listContainers?.(sandboxDir) ?? [],
      });
      let left = await leftovers();
      while (performance.now() < deadline && Object.values(left).some((found) => found.length > 0)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        left = await leftovers();
      }
      assert.deepEqual(left, { processes: [], buildDirs: [], scratchContents: [], containers: [] }, 'nothing of a build is left');
      assert.equal(await fs.readFile(sentinel, 'utf8'), 'host data\n', 'the host file is unchanged');
    });

    const services: BuildService[] = [];
    const make = (limits: SandboxLimits = {}) => {
      const created = options.create({ blobService, directoryService, sandboxDir, concurrency: 2, ...limits });
      services.push(created);
      return created;
    };

    function request(
      script: string,
      extra: Partial<BuildRequest> = {},
      constraints: Partial<BuildRequest['constraints'] & object> = {},
    ): BuildRequest {
      return {
        inputs: [{ name: parsePathComponent(INPUT), node: toolsNode }],
        commandArgs: [BB, 'sh', '-c', script],
        workingDir: 'build',
        scratchPaths: ['build', 'nix/store'],
        inputsDir: 'nix/store',
        outputs: ['nix/store/out'],
        environmentVars: [
          { key: 'GREETING', value: encoder.encode('hi there') },
          { key: 'KILN_SUITE', value: encoder.encode(marker) },
          { key: 'PATH', value: encoder.encode('/nix/store/abc-tools/bin') },
          { key: 'out', value: encoder.encode('/nix/store/out') },
        ],
        constraints: {
          system: 'x86_64-linux',
          minMemory: 0,
          availableRoPaths: [],
          networkAccess: false,
          provideBinSh: true,
          ...constraints,
        },
        additionalFiles: [],
        refscanNeedles: [INPUT, 'not-there'],
        ...extra,
      };
    }

    async function run(req: BuildRequest, opts: { service?: BuildService; signal?: AbortSignal } = {}): Promise<BuildEvent[]> {
      const events: BuildEvent[] = [];
      for await (const event of (opts.service ?? service).build(req, opts.signal ? { signal: opts.signal } : {})) events.push(event);
      return events;
    }
    const logOf = (events: BuildEvent[], stream?: 'stdout' | 'stderr') =>
      Buffer.concat(events.flatMap((e) => (e.type === 'log' && (!stream || e.stream === stream) ? [Buffer.from(e.data)] : []))).toString();
    /** Runs `script` (busybox applets called as `$BB applet`), expects success, returns stdout. */
    async function succeeds(
      script: string,
      extra: Partial<BuildRequest> = {},
      constraints = {},
    ): Promise<{ log: string; events: BuildEvent[] }> {
      const events = await run(request(`BB=${BB}; ${script}`, extra, constraints));
      assert.equal(events.at(-1)?.type, 'finished', `${JSON.stringify(events.at(-1))}\n${logOf(events)}`);
      return { log: logOf(events, 'stdout'), events };
    }
    async function fails(req: BuildRequest, reason: string, opts: { service?: BuildService } = {}) {
      const events = await run(req, opts);
      const last = events.at(-1);
      assert.equal(last?.type, 'failed', logOf(events));
      assert.ok(last?.type === 'failed');
      assert.equal(last.reason, reason, last.message);
      return last;
    }
    const fileText = async (node: Node | undefined) => {
      assert.ok(node?.type === 'file');
      const outputs = (await options.outputBlobService?.(service)) ?? blobService;
      return Buffer.from(await concatBytes((await outputs.read(node.digest)) ?? [])).toString();
    };

    describe('what a build sees', () => {
      it('runs as uid 1000 / gid 100 with exactly the requested environment (and PWD, HOME), in working_dir, as host `localhost`', async () => {
        const { log } = await succeeds(
          '$BB id -u; $BB id -g; $BB hostname; $BB pwd; $BB tr "\\0" "\\n" < /proc/$$/environ | $BB sort; echo done > $out',
        );
        assert.equal(
          log,
          `1000\n100\nlocalhost\n/build\nGREETING=hi there\nHOME=/build\nKILN_SUITE=${marker}\nPATH=/nix/store/abc-tools/bin\nPWD=/build\nout=/nix/store/out\n`,
        );
      });

      it('has /etc passwd, group and hosts as Nix writes them, and nothing else from the host', async () => {
        const { log } = await succeeds('$BB cat /etc/passwd /etc/group /etc/hosts; $BB ls /etc; echo done > $out');
        const etc = etcFiles('/build');
        assert.equal(log, `${etc.passwd}${etc.group}${etc.hosts}group\nhosts\npasswd\n`);
      });

      it('has /proc, a minimal /dev and a 1777 /tmp', async () => {
        const { log } = await succeeds(
          'for d in null zero full random urandom tty shm pts fd stdin stdout stderr; do [ -e /dev/$d ] && echo $d; done; ' +
            '$BB stat -c %a /tmp; echo x > /tmp/f && echo tmp-writable; [ -r /proc/self/status ] && echo proc; ' +
            '$BB head -c 4 /dev/zero | $BB wc -c; echo done > $out',
        );
        assert.equal(log, 'null\nzero\nfull\nrandom\nurandom\ntty\nshm\npts\nfd\nstdin\nstdout\nstderr\n1777\ntmp-writable\nproc\n4\n');
      });

      it('binds inputs read-only and scratch paths writable, with the root read-only', async () => {
        const { log } = await succeeds(
          '$BB cat /nix/store/abc-tools/greeting; touch() { $BB touch "$1" 2>/dev/null && echo "wrote $1" || echo "refused $1"; }; ' +
            'touch /nix/store/abc-tools/x; touch /x; touch /etc/x; touch /build/x; touch /nix/store/x; echo done > $out',
        );
        assert.equal(
          log,
          'hello from an input\nrefused /nix/store/abc-tools/x\nrefused /x\nrefused /etc/x\nwrote /build/x\nwrote /nix/store/x\n',
        );
      });

      it('gives file inputs read-only, plain and executable, whatever the build tries on them', async () => {
        const data = (await importPath(join(sandboxDir, 'src-tools', 'greeting'), { blobService, directoryService })).node;
        await fs.writeFile(join(sandboxDir, 'tool.sh'), '#!/bin/sh\necho tool runs\n', { mode: 0o755 });
        const tool = (await importPath(join(sandboxDir, 'tool.sh'), { blobService, directoryService })).node;
        const inputs = [
          { name: parsePathComponent(INPUT), node: toolsNode },
          { name: parsePathComponent('def-data'), node: data },
          { name: parsePathComponent('ghi-tool'), node: tool },
        ];
        const attempt = (what: string, command: string) => `{ ${command}; } 2>/dev/null && echo "${what} done" || echo "${what} refused"`;
        const f = '/nix/store/def-data';
        const script = [
          `$BB cat ${f}; /nix/store/ghi-tool; [ -x ${f} ] || echo data not executable`,
          attempt('append', `echo more >> ${f}`),
          attempt('truncate', `printf "" > ${f}`),
          attempt('chmod', `$BB chmod 666 ${f}`),
          attempt('touch', `$BB touch -d 2000-01-01 ${f}`),
          attempt('tool overwrite', 'echo x > /nix/store/ghi-tool'),
          `$BB cat ${f}; $BB rm -f ${f}; [ -e ${f} ] || echo removed from this sandbox; echo done > $out`,
        ].join('; ');
        const first = await succeeds(script, { inputs });
        const expected =
          'hello from an input\ntool runs\ndata not executable\nappend refused\ntruncate refused\nchmod refused\n' +
          'touch refused\ntool overwrite refused\nhello from an input\nremoved from this sandbox\n';
        assert.equal(first.log, expected);
        assert.equal(await fileText(data), 'hello from an input\n', 'the stored blob is unchanged');
        const again = await succeeds(script, { inputs });
        assert.equal(again.log, expected, 'the next build gets the input whole');

        // The same on a disk store, whose blob files a sandbox may get hard-linked.
        const disk = await openFsCastore(join(sandboxDir, 'disk-store'));
        const onDisk = options.create({ ...disk, sandboxDir, concurrency: 1 });
        try {
          const diskInputs = [];
          for (const [name, path] of [
            [INPUT, join(sandboxDir, 'src-tools')],
            ['def-data', join(sandboxDir, 'src-tools', 'greeting')],
            ['ghi-tool', join(sandboxDir, 'tool.sh')],
          ] as const)
            diskInputs.push({ name: parsePathComponent(name), node: (await importPath(path, disk)).node });
          for (let i = 0; i < 2; i++) {
            const events = await run(request(`BB=${BB}; ${script}`, { inputs: diskInputs }), { service: onDisk });
            assert.equal(events.at(-1)?.type, 'finished', logOf(events));
            assert.equal(logOf(events, 'stdout'), expected);
          }
          const blob = await disk.blobService.read((diskInputs[1] as { node: FileNode }).node.digest);
          assert.equal(Buffer.from(await concatBytes(blob ?? [])).toString(), 'hello from an input\n', 'the blob file is unchanged');
        } finally {
          await onDisk.close();
          await disk.close();
        }
      });

      it('provides /bin/sh only when asked, and binds available_ro_paths read-only', async () => {
        const roDir = join(sandboxDir, 'ro-path');
        await fs.mkdir(roDir, { recursive: true });
        await fs.writeFile(join(roDir, 'data'), 'ro data\n');
        const script =
          '[ -e /bin/sh ] && echo sh || echo no-sh; $BB cat $RO/data; $BB touch $RO/x 2>/dev/null || echo refused; echo done > $out';
        const env = (ro: string) =>
          [...request('').environmentVars, { key: 'RO', value: encoder.encode(ro) }].sort((a, b) => (a.key < b.key ? -1 : 1));
        const withSh = await succeeds(script, { environmentVars: env(roDir) }, { availableRoPaths: [roDir] });
        assert.equal(withSh.log, 'sh\nro data\nrefused\n');
        const withoutSh = await succeeds(script, { environmentVars: env(roDir) }, { availableRoPaths: [roDir], provideBinSh: false });
        assert.equal(withoutSh.log, 'no-sh\nro data\nrefused\n');
      });

      it('writes additional files before start, inside and outside scratch paths', async () => {
        const { log } = await succeeds('$BB cat /build/in-scratch.txt /etc/extra/in-etc.txt /opt/kiln/outside.txt; echo done > $out', {
          additionalFiles: [
            { path: 'build/in-scratch.txt', contents: encoder.encode('inside\n') },
            { path: 'etc/extra/in-etc.txt', contents: encoder.encode('in etc\n') },
            { path: 'opt/kiln/outside.txt', contents: encoder.encode('outside\n') },
          ],
        });
        assert.equal(log, 'inside\nin etc\noutside\n');
      });

      it('has only fds 0, 1 and 2 open: nothing of the host process reaches it', async () => {
        // Each fd tested with a builtin: a pipeline or a glob would open some of its own.
        const { log } = await succeeds('for fd in $($BB seq 0 1100); do [ -e /proc/$$/fd/$fd ] && echo $fd; done; echo done > $out');
        assert.equal(log, '0\n1\n2\n');
      });

      it('has no capabilities and no new privileges', async () => {
        const { log } = await succeeds(
          '$BB grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status; echo done > $out',
        );
        for (const line of log.trim().split('\n')) {
          if (line.startsWith('NoNewPrivs')) assert.match(line, /1$/);
          else assert.match(line, /:\s+0+$/, line);
        }
      });
    });

    describe('what comes back', () => {
      it('ingests outputs and reports the refscan needles they contain', async () => {
        const { events } = await succeeds('$BB cat /nix/store/abc-tools/greeting > $out; echo /nix/store/abc-tools >> $out');
        const last = events.at(-1);
        assert.ok(last?.type === 'finished');
        assert.deepEqual(last.response.outputs[0]?.needles, [0]);
        assert.equal(await fileText(last.response.outputs[0]?.node), 'hello from an input\n/nix/store/abc-tools\n');
        assert.equal(events[0]?.type, 'accepted');
        assert.equal(events[1]?.type, 'started');
      });

      it('delivers every log byte in order with running offsets per stream', async () => {
        const { events } = await succeeds(
          'i=0; while [ $i -lt 3000 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); done; echo done > $out',
        );
        for (const stream of ['stdout', 'stderr'] as const) {
          let offset = 0;
          for (const e of events) {
            if (e.type !== 'log' || e.stream !== stream) continue;
            assert.equal(e.offset, offset);
            offset += e.data.byteLength;
          }
        }
        const lines = logOf(events, 'stdout').trim().split('\n');
        assert.equal(lines.length, 3000);
        assert.deepEqual(lines.slice(-2), ['line 2998', 'line 2999']);
        assert.equal(logOf(events, 'stderr').trim().split('\n').length, 3000);
      });

      it('reports a non-zero exit with its status and the log tail', async () => {
        const failed = await fails(request(`${BB} echo about to fail; exit 3`), 'exit-code');
        assert.equal(failed.exitCode, 3);
        assert.match(failed.logTail, /about to fail/);
      });

      it('tells a command killed by a signal from one exiting with 128 + that signal', async () => {
        const killed = await fails(request(`${BB} echo about to die; ${BB} kill -9 $$`), 'signal');
        assert.equal(killed.signal, 'SIGKILL');
        assert.equal(killed.exitCode, undefined);
        assert.equal(killed.message, 'the build was killed by SIGKILL');
        assert.match(killed.logTail, /about to die/);
        const segv = await fails(request(`${BB} kill -SEGV $$`), 'signal');
        assert.equal(segv.signal, 'SIGSEGV');
        const exited = await fails(request('exit 137'), 'exit-code');
        assert.equal(exited.exitCode, 137);
        assert.equal(exited.signal, undefined);
        assert.equal(exited.message, 'the build exited with status 137');
      });

      it('runs a command named without a slash from PATH, and fails with status 127 naming one it cannot run', async () => {
        const environmentVars = request('').environmentVars.map((v) =>
          v.key === 'PATH' ? { key: 'PATH', value: encoder.encode(`/nowhere:/nix/store/${INPUT}`) } : v,
        );
        const events = await run(
          request('', { commandArgs: ['busybox', 'sh', '-c', 'busybox echo found on PATH; busybox echo done > $out'], environmentVars }),
        );
        assert.equal(events.at(-1)?.type, 'finished', logOf(events));
        assert.equal(logOf(events, 'stdout'), 'found on PATH\n');
        const failed = await fails(request('', { commandArgs: ['no-such-builder'] }), 'exit-code');
        assert.equal(failed.exitCode, 127);
        assert.match(failed.logTail, /no-such-builder/);
      });

      it('fails naming a missing output', async () => {
        const failed = await fails(request('true'), 'output-missing');
        assert.match(failed.message, /nix\/store\/out/);
      });

      it('reports cpu time and peak memory', async () => {
        const { events } = await succeeds('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i > $out');
        const last = events.at(-1);
        assert.ok(last?.type === 'finished' && last.cpuTimeMs > 0 && last.peakMemoryBytes > 0, JSON.stringify(last));
      });

      it('rejects a request needing more memory than the host has, running nothing', async () => {
        await assert.rejects(
          run(request('true', {}, { minMemory: 2 ** 52 })),
          (e) => (e as { code?: string }).code === 'CONSTRAINTS_UNMET',
        );
      });

      it('rejects a request whose input is not in the store', async () => {
        const other = new MemoryBlobService();
        const missing = (await importPath(join(sandboxDir, 'host-sentinel'), { blobService: other, directoryService })).node;
        const req = request('true', { inputs: [{ name: parsePathComponent('missing-input'), node: missing }] });
        await assert.rejects(run(req), (e) => (e as { code?: string }).code === 'INPUT_MISSING');
      });
    });

    describe('limits and cancellation', () => {
      it('abort kills the build within a second and leaves nothing behind', async () => {
        const marker = randomUUID();
        const controller = new AbortController();
        const reason = new Error('stop');
        let abortedAt = 0;
        const events = (async () => {
          for await (const e of service.build(request(`${BB} sleep 30; echo ${marker} > $out`), { signal: controller.signal })) {
            if (e.type === 'started') {
              setTimeout(() => {
                abortedAt = performance.now();
                controller.abort(reason);
              }, 200);
            }
          }
        })();
        await assert.rejects(events, (e) => e === reason);
        assert.ok(performance.now() - abortedAt < 1000, `took ${performance.now() - abortedAt} ms`);
      });

      it('an abort as soon as the build is accepted still ends it, leaving nothing behind', async () => {
        await succeeds('echo warm > $out'); // inputs materialized: set-up then has no step that would notice the abort itself
        const controller = new AbortController();
        const reason = new Error('stop at once');
        const started = performance.now();
        const events = (async () => {
          for await (const e of service.build(request(`${BB} sleep 30; echo late > $out`), { signal: controller.signal }))
            if (e.type === 'accepted') controller.abort(reason);
        })();
        await assert.rejects(events, (e) => e === reason);
        assert.ok(performance.now() - started < 1500, `took ${performance.now() - started} ms`);
      });

      for (const [kind, limits, script] of [
        ['timeout', { timeoutMs: 500 }, 'while true; do echo tick; $BB sleep 0.1; done'],
        ['silence-timeout', { silenceTimeoutMs: 500 }, 'echo started; $BB sleep 30'],
      ] as const) {
        it(`a build past its ${kind} is killed and fails as ${kind}`, async () => {
          const started = performance.now();
          await fails(request(`BB=${BB}; ${script}`), kind, { service: make(limits) });
          assert.ok(performance.now() - started < 2500, `took ${performance.now() - started} ms`);
        });
      }

      it('a memory hog past the limit fails as out-of-memory', async () => {
        const script = `${BB} dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived > $out`;
        await fails(request(script), 'out-of-memory', { service: make({ memoryLimitBytes: 64 * 2 ** 20 }) });
      });

      it('a fork bomb stays within the process limit and the build still ends cleanly', async () => {
        const script = `i=0; while [ $i -lt 100 ]; do ${BB} sleep 5 & i=$((i+1)); done; echo spawned > $out`;
        const events = await run(request(script), { service: make({ pidsLimit: 32 }) });
        assert.match(logOf(events), /can't fork|Resource temporarily unavailable|fork/i);
      });

      it('reaps the orphans a build leaves as they end: no zombie is left holding a pid', async () => {
        const script =
          `i=0; while [ $i -lt 10 ]; do ( ${BB} true & ); i=$((i+1)); done; ` +
          `for try in $(${BB} seq 1 40); do z=$(${BB} grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | ${BB} wc -l); ` +
          `[ "$z" = 0 ] && break; ${BB} sleep 0.05; done; echo "zombies $z"; echo done > $out`;
        const events = await run(request(script));
        assert.equal(events.at(-1)?.type, 'finished', logOf(events));
        assert.equal(logOf(events, 'stdout'), 'zombies 0\n');
      });
    });

    describe('escapes are contained', () => {
      let server: Server;
      let port = 0;
      let connections = 0;
      before(async () => {
        server = createServer((socket) => {
          connections++;
          socket.end('host secret\n');
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        port = (server.address() as { port: number }).port;
      });
      after(() => new Promise<void>((resolve) => server.close(() => resolve())));

      it('cannot reach a TCP port on the host loopback, and sees only its own loopback interface', async () => {
        const { log } = await succeeds(
          `$BB nc 127.0.0.1 ${port} </dev/null 2>/dev/null && echo reached || echo refused; $BB grep -c : /proc/net/dev; echo done > $out`,
        );
        assert.equal(log, 'refused\n1\n');
        assert.equal(connections, 0);
      });

      it('with network_access, shares the host network and reaches its loopback', async () => {
        const before = connections;
        const { log } = await succeeds(`$BB nc 127.0.0.1 ${port} </dev/null; echo done > $out`, {}, { networkAccess: true });
        assert.equal(log, 'host secret\n');
        assert.equal(connections, before + 1);
      });

      it('cannot see host files or host processes', async () => {
        const { log } = await succeeds(
          `[ -e ${sentinel} ] && echo sees-host-file; [ -e /root ] && echo sees-root; [ -e /etc/shadow ] && echo sees-shadow; ` +
            `$BB kill -0 ${process.pid} 2>/dev/null && echo sees-host-process; ` +
            '$BB ls /proc | $BB grep -c "^[0-9]" > /tmp/n; [ $($BB cat /tmp/n) -lt 10 ] && echo few-processes; echo done > $out',
        );
        assert.equal(log, 'few-processes\n');
      });

      it('cannot mount, ptrace outside, raise its limits or write to cgroups', async () => {
        const { log } = await succeeds(
          '$BB mkdir -p /tmp/m; $BB mount -t tmpfs none /tmp/m 2>/dev/null && echo mounted; ' +
            '$BB mount --bind / /tmp/m 2>/dev/null && echo bind-mounted; ' +
            'hard=$(ulimit -H -n); ulimit -H -n $((hard + 1)) 2>/dev/null && echo raised-nofile; ' +
            'for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do echo -1 > $f 2>/dev/null && echo wrote-$f; done; ' +
            '$BB nsenter -t 1 -m true 2>/dev/null && echo entered; echo done > $out',
        );
        assert.equal(log, '');
      });

      it('cannot create setuid or setgid files', async () => {
        const { log } = await succeeds(
          '$BB cp $BB /build/s; $BB chmod 755 /build/s; for m in 4755 2755 6755; do $BB chmod $m /build/s 2>/dev/null && echo "set $m"; done; ' +
            '$BB mkdir /build/d; $BB chmod g+s /build/d 2>/dev/null && echo setgid-dir; $BB chmod 1777 /build/d && echo sticky-ok; ' +
            '$BB stat -c %a /build/s; echo done > $out',
        );
        assert.equal(log, 'sticky-ok\n755\n');
      });

      it('an output that is a symlink to a host path is stored as that symlink, never followed', async () => {
        const { events } = await succeeds(`$BB ln -s ${sentinel} $out`);
        const last = events.at(-1);
        assert.ok(last?.type === 'finished');
        const node = last.response.outputs[0]?.node;
        assert.equal(node?.type, 'symlink');
        if (node?.type === 'symlink') assert.equal(Buffer.from(node.target).toString(), sentinel);
      });

      it('an output holding a fifo fails as output-invalid; a device node cannot be made', async () => {
        await fails(request(`${BB} mkdir $out; ${BB} mkfifo $out/pipe`), 'output-invalid');
        const { log } = await succeeds(`$BB mkdir $out; $BB mknod $out/null c 1 3 2>/dev/null && echo made-device; echo ok`);
        assert.equal(log, 'ok\n');
      });
    });
  });
}

/**
 * Live processes of this suite's builds: every build's environment carries
 * the suite's marker, inherited by all its processes. Zombies are dead
 * already (this machine's init collects them lazily) and are not counted.
 */
function suiteProcesses(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/environ`).includes(`KILN_SUITE=${marker}`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** What lies in the scratch directories kept per build user (`SANDBOX_DIR/scratch/<uid>/<i>/…`): nothing, between builds. */
async function keptScratchContents(sandboxDir: string): Promise<string[]> {
  const found: string[] = [];
  const list = (dir: string) => fs.readdir(dir).catch(() => [] as string[]);
  const root = join(sandboxDir, 'scratch');
  for (const user of await list(root))
    for (const dir of await list(join(root, user)))
      for (const entry of await list(join(root, user, dir))) found.push(`${user}/${dir}/${entry}`);
  return found;
}
