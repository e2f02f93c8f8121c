/**
 * Remote builds at the API level, over real unix sockets to a real server
 * building with bubblewrap: a connection cut mid-build (the client attaches
 * again and gets every event once, in order), 100 MB of log arriving
 * complete and in order, a silent build whose stream keepalives hold open
 * through a proxy that drops idle connections (and that can still be
 * cancelled), a client that goes away, and admission (constraints, an
 * incomplete input closure, a full server) refused at once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { GrpcChannel } from '../../castore/grpc/index.js';
import {
  B3Digest,
  Directory,
  directoryNode,
  fileNode,
  importPath,
  MemoryBlobService,
  MemoryDirectoryService,
  parsePathComponent,
} from '../../castore/index.js';
import { BuildEvents } from '../../gen/kiln/build/v1/build_events_pb.js';
import { BuildService as SnixBuildService } from '../../gen/snix/build/v1/rpc_build_pb.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { BwrapBuildService } from '../bwrap/bwrap-build-service.js';
import { buildRequestToMessage } from '../proto-convert.js';
import { bwrapSkipReason, shellBuildRequest } from '../testing/index.js';
import { type KilnServer, startKilnServer } from './build-grpc-server.js';
import { buildEventFromMessage } from './event-convert.js';
import { GrpcBuildService } from './grpc-build-service.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping the remote build tests: ${skip}`);
const encoder = new TextEncoder();

/** A unix-socket proxy that counts connections, can cut them all, and drops a connection idle for `idleMs`, like a NAT or load balancer. */
class SocketProxy {
  connections = 0;
  readonly path: string;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(path: string, server: net.Server) {
    this.path = path;
    this.#server = server;
  }

  static async start(path: string, target: string, idleMs?: number): Promise<SocketProxy> {
    const server = net.createServer();
    const proxy = new SocketProxy(path, server);
    server.on('connection', (downstream) => {
      proxy.connections++;
      const upstream = net.connect(target);
      let lastTraffic = performance.now();
      // Traffic either way counts: only a connection silent in both directions is dropped.
      const idle =
        idleMs === undefined
          ? undefined
          : setInterval(() => {
              if (performance.now() - lastTraffic >= idleMs) downstream.destroy();
            }, 100);
      for (const socket of [downstream, upstream]) {
        proxy.#sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          clearInterval(idle);
          proxy.#sockets.delete(socket);
          downstream.destroy();
          upstream.destroy();
        });
      }
      downstream.on('data', (d) => {
        lastTraffic = performance.now();
        upstream.write(d);
      });
      upstream.on('data', (d) => {
        lastTraffic = performance.now();
        downstream.write(d);
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return proxy;
  }

  cut(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Processes whose command line contains `marker`. */
function processesMatching(marker: string): string[] {
  const result = spawnSync('pgrep', ['-af', marker], { encoding: 'utf8' });
  return result.stdout.split('\n').filter((line) => line !== '' && !line.includes('pgrep'));
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

const logOf = (events: BuildEvent[]) => Buffer.concat(events.flatMap((e) => (e.type === 'log' ? [e.data] : [])));

/** Checks that log offsets run without gap or overlap, per stream. */
function assertContiguous(events: BuildEvent[]): void {
  const next = { stdout: 0, stderr: 0 };
  for (const event of events) {
    if (event.type !== 'log') continue;
    assert.equal(event.offset, next[event.stream], `${event.stream} offset`);
    next[event.stream] += event.data.byteLength;
  }
}

describe('remote builds over gRPC: re-attach, large logs, keepalives, cancellation, admission', { skip: skip ?? false }, () => {
  let dir: string;
  let sandboxDir: string;
  const serverStore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
  const clientStore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
  let builder: BwrapBuildService;
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    dir = await fs.mkdtemp('/var/tmp/kiln-remote-api-');
    await fs.chmod(dir, 0o711); // build users traverse it to their sandbox
    sandboxDir = join(dir, 'sandbox');
    builder = new BwrapBuildService({ ...serverStore, sandboxDir, concurrency: 2 });
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await builder.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  let count = 0;
  /**
   * A server on a socket of its own, closed after the suite. `quiet`: its
   * builder drops the resource samples bwrap reports every second, so that
   * nothing at all crosses the wire while a build prints nothing.
   */
  async function server(
    options: { keepaliveMs?: number; maxInFlight?: number; quiet?: boolean } = {},
  ): Promise<KilnServer & { socket: string }> {
    const socket = join(dir, `server-${count++}.sock`);
    const quiet: BuildService = {
      name: builder.name,
      async *build(request, buildOptions) {
        for await (const event of builder.build(request, buildOptions)) if (event.type !== 'resources') yield event;
      },
      close: async () => {},
    };
    const started = await startKilnServer({
      listen: `unix://${socket}`,
      ...serverStore,
      builder: options.quiet ? quiet : builder,
      ...(options.keepaliveMs !== undefined ? { keepaliveMs: options.keepaliveMs } : {}),
      ...(options.maxInFlight !== undefined ? { maxInFlight: options.maxInFlight } : {}),
      journalDir: join(dir, 'journals'),
    });
    closers.push(() => started.close());
    return Object.assign(started, { socket });
  }
  async function proxy(target: string, idleMs?: number): Promise<SocketProxy> {
    const started = await SocketProxy.start(join(dir, `proxy-${count++}.sock`), target, idleMs);
    closers.push(() => started.close());
    return started;
  }
  /** A client that asks the server to keep its builds through a broken connection (re-attach), unless told otherwise. */
  function client(url: string, options: { keepaliveMs?: number; reattachGraceMs?: number } = {}): GrpcBuildService {
    const created = new GrpcBuildService({ url, ...clientStore, reattachGraceMs: 30_000, ...options });
    closers.push(() => created.close());
    return created;
  }
  function rawClients(socket: string) {
    const channel = new GrpcChannel(`grpc+unix://${socket}`);
    closers.push(() => channel.close());
    return { events: createClient(BuildEvents, channel.transport), snix: createClient(SnixBuildService, channel.transport) };
  }
  const buildDirs = async () => (await fs.readdir(sandboxDir).catch(() => [] as string[])).filter((n) => n.startsWith('build-'));

  it('a client whose connection breaks mid-build attaches again and gets every event exactly once, in order', async () => {
    const target = await server();
    const cutter = await proxy(target.socket);
    const service = client(`grpc+unix://${cutter.path}`);
    const script = 'i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; echo built > $out';
    const events: BuildEvent[] = [];
    let cuts = 0;
    for await (const event of service.build(shellBuildRequest(script))) {
      events.push(event);
      const log = logOf(events).toString();
      if ((cuts === 0 && log.includes('line 10\n')) || (cuts === 1 && log.includes('line 25\n'))) {
        cuts++;
        cutter.cut();
      }
    }
    assert.equal(cuts, 2);
    assert.ok(cutter.connections >= 3, `attached again after each cut (${cutter.connections} connections)`);
    assert.equal(logOf(events).toString(), Array.from({ length: 40 }, (_, i) => `line ${i}\n`).join(''));
    assertContiguous(events);
    assert.equal(events[0]?.type, 'accepted');
    assert.equal(events.at(-1)?.type, 'finished');
    assert.equal(events.filter((e) => e.type === 'accepted').length, 1);

    // Exactly the server's journal, replayed from the start.
    const accepted = events[0] as Extract<BuildEvent, { type: 'accepted' }>;
    const journal: BuildEvent[] = [];
    for await (const message of rawClients(target.socket).events.attach({ invocationId: accepted.invocationId, fromSequence: 0n }))
      journal.push(buildEventFromMessage(message));
    const normalize = (list: BuildEvent[]) => list.map((e) => (e.type === 'log' ? { ...e, data: Buffer.from(e.data).toString() } : e));
    assert.deepEqual(normalize(events), normalize(journal));
    // And from any sequence on.
    const tail: BuildEvent[] = [];
    for await (const message of rawClients(target.socket).events.attach({ invocationId: accepted.invocationId, fromSequence: 5n }))
      tail.push(buildEventFromMessage(message));
    assert.deepEqual(normalize(tail), normalize(journal.slice(5)));
  });

  it('does not ask again about inputs the server has; uploads them again, once, when a restarted server has lost them', async () => {
    const socket = join(dir, 'restarting.sock');
    const startFresh = async () => {
      const store = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
      const fresh = new BwrapBuildService({ ...store, sandboxDir, concurrency: 2 });
      const started = await startKilnServer({ listen: `unix://${socket}`, ...store, builder: fresh, journalDir: join(dir, 'journals') });
      return {
        async close() {
          await started.close();
          await fresh.close();
        },
      };
    };
    const tree = join(dir, 'remembered-input');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'data'), 'remembered\n');
    const { node } = await importPath(tree, clientStore);
    const uploads: { bytesSent: number; directoriesSent: number }[] = [];
    const service = new GrpcBuildService({ url: `grpc+unix://${socket}`, ...clientStore, onUpload: (u) => uploads.push(u) });
    closers.push(() => service.close());
    const request = shellBuildRequest('cat /nix/store/in/data > $out', { inputs: [{ name: parsePathComponent('in'), node }] });
    const build = async () => {
      const events: BuildEvent[] = [];
      for await (const event of service.build(request)) events.push(event);
      assert.equal(events.at(-1)?.type, 'finished', JSON.stringify(events.at(-1)));
    };
    let server = await startFresh();
    await build();
    await build();
    assert.deepEqual(
      uploads.map((u) => [u.bytesSent, u.directoriesSent]),
      [
        [11, 1],
        [0, 0],
      ],
    );
    await server.close();
    server = await startFresh();
    closers.push(() => server.close());
    await build();
    assert.deepEqual(
      uploads.slice(2).map((u) => [u.bytesSent, u.directoriesSent]),
      [
        [0, 0],
        [11, 1],
      ],
      'nothing checked first, then everything checked and sent after the server said it lacks the input',
    );
  });

  it('100 MB of log arrive complete and in order through the remote stream', async () => {
    const target = await server();
    const service = client(`grpc+unix://${target.socket}`);
    const lines = 13_000_000;
    const expected = createHash('sha256');
    let expectedBytes = 0;
    for (let start = 1; start <= lines; start += 100_000) {
      let chunk = '';
      for (let i = start; i < Math.min(start + 100_000, lines + 1); i++) chunk += `${i}\n`;
      expected.update(chunk);
      expectedBytes += chunk.length;
    }
    const received = createHash('sha256');
    let receivedBytes = 0;
    let chunks = 0;
    let offset = 0;
    let last: BuildEvent | undefined;
    for await (const event of service.build(shellBuildRequest(`seq 1 ${lines}; echo done > $out`))) {
      last = event;
      if (event.type !== 'log') continue;
      assert.equal(event.stream, 'stdout');
      assert.equal(event.offset, offset);
      offset += event.data.byteLength;
      received.update(event.data);
      receivedBytes += event.data.byteLength;
      chunks++;
    }
    assert.ok(expectedBytes > 100_000_000, `${expectedBytes} bytes expected`);
    assert.equal(receivedBytes, expectedBytes);
    assert.equal(received.digest('hex'), expected.digest('hex'), 'the same bytes in the same order');
    assert.equal(last?.type, 'finished');
    assert.ok(chunks > 100, `${chunks} log events`);
  });

  describe('a silent build (no log, no resource samples) behind a proxy that drops connections idle for 3 s', () => {
    const script = (marker: string, tail: string) => `echo before-silence; sleep 11; echo after-silence; ${tail} # ${marker}`;

    it('keeps its one connection through 11 s of silence with 1 s keepalives, and is still cancelled within a second', async () => {
      const target = await server({ keepaliveMs: 1000, quiet: true });
      const idle = await proxy(target.socket, 3000);
      const service = client(`grpc+unix://${idle.path}`, { keepaliveMs: 1000 });
      const marker = `kiln-silent-${process.pid}-${count}`;
      const controller = new AbortController();
      const events: BuildEvent[] = [];
      let cancelledAt: number | undefined;
      await assert.rejects(
        (async () => {
          for await (const event of service.build(shellBuildRequest(script(marker, 'sleep 300')), { signal: controller.signal })) {
            events.push(event);
            if (logOf(events).toString().includes('after-silence\n') && cancelledAt === undefined) {
              assert.equal(idle.connections, 1, 'the same connection carried the log before and after the silence');
              // Silent again, for longer than the proxy tolerates, then cancelled.
              await new Promise((resolve) => setTimeout(resolve, 4000));
              assert.ok(processesMatching(marker).length > 0, 'the build still runs');
              cancelledAt = performance.now();
              controller.abort(new Error('cancelled by the test'));
            }
          }
        })(),
        /cancelled by the test/,
      );
      assert.equal(idle.connections, 1, 'never reconnected');
      assert.ok(await waitUntil(() => processesMatching(marker).length === 0, 1000), 'the sandbox is gone within a second');
      assert.ok(performance.now() - (cancelledAt as number) < 1500);
      assert.ok(await waitUntil(() => target.builds?.invocations.inFlight === 0, 2000));
      assert.deepEqual(await buildDirs(), []);
    });

    it('without keepalives the proxy drops the idle connection; the client attaches again and misses nothing', async () => {
      const target = await server({ keepaliveMs: 600_000, quiet: true });
      const idle = await proxy(target.socket, 3000);
      const service = client(`grpc+unix://${idle.path}`, { keepaliveMs: 600_000 });
      const events: BuildEvent[] = [];
      for await (const event of service.build(shellBuildRequest('echo before-silence; sleep 5; echo after-silence; echo x > $out')))
        events.push(event);
      assert.ok(idle.connections >= 2, `the idle connection was dropped (${idle.connections} connections)`);
      assert.equal(logOf(events).toString(), 'before-silence\nafter-silence\n');
      assertContiguous(events);
      assert.equal(events.at(-1)?.type, 'finished');
    });
  });

  it('a DoBuild caller that goes away cancels its build within a second', async () => {
    const target = await server();
    const { snix } = rawClients(target.socket);
    const marker = `kiln-dobuild-gone-${process.pid}`;
    const controller = new AbortController();
    const call = snix.doBuild(buildRequestToMessage(shellBuildRequest(`sleep 300 # ${marker}`)), { signal: controller.signal });
    call.catch(() => {});
    assert.ok(await waitUntil(() => processesMatching(marker).length > 0, 10_000), 'the build started');
    controller.abort();
    const gone = performance.now();
    assert.ok(await waitUntil(() => processesMatching(marker).length === 0, 1000), 'the sandbox is gone within a second');
    assert.ok(performance.now() - gone < 1000);
    await assert.rejects(call);
    assert.ok(await waitUntil(() => target.builds?.invocations.inFlight === 0, 2000), 'the build ended');
    assert.deepEqual(await buildDirs(), []);
  });

  it('a Build client without a re-attach grace that goes away cancels its build within a second', async () => {
    const target = await server();
    const gone = client(`grpc+unix://${target.socket}`, { reattachGraceMs: 0 });
    const marker = `kiln-build-gone-${process.pid}`;
    const running = (async () => {
      for await (const _ of gone.build(shellBuildRequest(`sleep 300 # ${marker}`)));
    })();
    running.catch(() => {});
    assert.ok(await waitUntil(() => processesMatching(marker).length > 0, 10_000), 'the build started');
    await gone.close(); // the connection goes away without a Cancel
    const closedAt = performance.now();
    assert.ok(await waitUntil(() => processesMatching(marker).length === 0, 1000), 'the sandbox is gone within a second');
    assert.ok(performance.now() - closedAt < 1000);
    assert.ok(await waitUntil(() => target.builds?.invocations.inFlight === 0, 2000), 'the build ended');
    assert.deepEqual(await buildDirs(), []);
  });

  describe('admission', () => {
    let target: KilnServer & { socket: string };
    let raw: ReturnType<typeof rawClients>;
    before(async () => {
      target = await server({ maxInFlight: 1 });
      raw = rawClients(target.socket);
    });

    /** Calls Build and DoBuild with `request` (nothing uploaded) and returns both errors and the time taken. */
    async function refusals(request: BuildRequest): Promise<{ errors: ConnectError[]; ms: number }> {
      const started = performance.now();
      const errors: ConnectError[] = [];
      const message = buildRequestToMessage(request);
      try {
        for await (const _ of raw.events.build(message)) assert.fail('no event expected');
      } catch (error) {
        errors.push(ConnectError.from(error));
      }
      try {
        await raw.snix.doBuild(message);
        assert.fail('DoBuild should fail');
      } catch (error) {
        errors.push(ConnectError.from(error));
      }
      return { errors, ms: performance.now() - started };
    }

    for (const [what, request, field] of [
      ['another system', shellBuildRequest('true', {}, { system: 'aarch64-darwin' }), 'constraints.system'],
      [
        'a read-only path the server lacks',
        shellBuildRequest('true', {}, { availableRoPaths: ['/nonexistent/kiln-ro-path'] }),
        'constraints.available_ro_paths[0]',
      ],
      ['more memory than the host has', shellBuildRequest('true', {}, { minMemory: totalmem() * 2 }), 'constraints.min_memory'],
    ] as const) {
      it(`refuses ${what} with FAILED_PRECONDITION at once, naming ${field}`, async () => {
        const { errors, ms } = await refusals(request);
        for (const error of errors) {
          assert.equal(error.code, Code.FailedPrecondition, error.message);
          assert.ok(error.rawMessage.includes(field), error.rawMessage);
        }
        assert.ok(ms < 1000, `answered in ${ms} ms`);
        assert.deepEqual(await buildDirs(), []);
      });
    }

    it('refuses an incomplete input closure with FAILED_PRECONDITION naming the missing digests', async () => {
      const blob = encoder.encode('an input blob the server never got\n');
      const blobDigest = B3Digest.of(blob);
      const inner = Directory.fromEntries([{ name: parsePathComponent('data'), node: fileNode(blobDigest, blob.byteLength, false) }]);
      const absent = Directory.fromEntries([{ name: parsePathComponent('other'), node: fileNode(blobDigest, blob.byteLength, true) }]);
      await serverStore.directoryService.putMany([inner]); // the directory without its blob
      const request = shellBuildRequest('true', {
        inputs: [
          { name: parsePathComponent('a-partial'), node: directoryNode(inner.digest, inner.size) },
          { name: parsePathComponent('b-absent'), node: directoryNode(absent.digest, absent.size) },
        ],
      });
      const { errors, ms } = await refusals(request);
      for (const error of errors) {
        assert.equal(error.code, Code.FailedPrecondition, error.message);
        assert.ok(error.rawMessage.includes(blobDigest.toString()), `names the missing blob: ${error.rawMessage}`);
        assert.ok(error.rawMessage.includes(absent.digest.toString()), `names the missing directory: ${error.rawMessage}`);
        assert.ok(!error.rawMessage.includes(inner.digest.toString()), 'not the directory it has');
      }
      assert.ok(ms < 1000, `answered in ${ms} ms`);
      assert.deepEqual(await buildDirs(), []);
    });

    it('refuses a build beyond max in flight with RESOURCE_EXHAUSTED, and takes it once there is room', async () => {
      const marker = `kiln-full-${process.pid}`;
      const controller = new AbortController();
      const first = raw.snix.doBuild(buildRequestToMessage(shellBuildRequest(`sleep 300 # ${marker}`)), { signal: controller.signal });
      first.catch(() => {});
      // Running, not just accepted: the local sandbox misses an abort that comes while it is being set up.
      assert.ok(await waitUntil(() => processesMatching(marker).length > 0, 10_000));
      assert.equal(target.builds?.invocations.inFlight, 1);
      const { errors } = await refusals(shellBuildRequest('echo second > $out'));
      for (const error of errors) {
        assert.equal(error.code, Code.ResourceExhausted, error.message);
        assert.match(error.rawMessage, /already has 1 builds running or queued/);
      }
      controller.abort();
      assert.ok(await waitUntil(() => target.builds?.invocations.inFlight === 0, 2000));
      const response = await raw.snix.doBuild(buildRequestToMessage(shellBuildRequest('echo second > $out')));
      assert.equal(response.outputs.length, 1);
      assert.ok(processesMatching(marker).length === 0);
    });
  });
});
