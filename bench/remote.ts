/**
 * `npm run bench:remote`: remote builds against the same builds in-process.
 *
 * 1. `trivial`: `echo hi > $out` with one tiny input, through the
 *    BuildService API: in this process on bwrap, and through a
 *    `bin/kiln serve` child (bwrap, its own disk store) over a unix socket,
 *    interleaved round by round; median latency from the call to the
 *    `finished` event. Target: remote ≤ 1.5× in-process.
 * 2. `upload`: a 1 GiB random input ($KILN_BENCH_DIR/big.bin, shared with
 *    bench:castore, made if missing) in a local disk store, built on a
 *    `bin/kiln serve` over TCP loopback whose disk store starts empty (the
 *    default store of `kiln serve`; this VM's disk makes the rate vary
 *    between runs): the upload rate of the first build (target ≥ 400 MB/s), then
 *    what a second build with the same input, from a new client, uploads
 *    (target: nothing). Dirty pages are flushed before each run. The
 *    server's peak RSS during the upload is reported.
 *
 * Everything else lives in a temporary directory under $KILN_BENCH_DIR
 * (default /var/tmp/kiln-bench), removed at the end. `KILN_BENCH_ONLY=
 * trivial|upload` runs one part. Exits 1 when a target is missed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GrpcBuildService } from '../src/build/grpc/index.js';
import { type BuildEvent, type BuildRequest, BwrapBuildService } from '../src/build/index.js';
import { shellBuildRequest } from '../src/build/testing/index.js';
import { importPath, type Node, openFsCastore, parsePathComponent } from '../src/castore/index.js';
import { mb, median, printTable, type Row } from './harness.js';

const repo = resolve(import.meta.dirname, '..');
const kiln = join(repo, 'bin/kiln');
const benchDir = resolve(process.env.KILN_BENCH_DIR ?? '/var/tmp/kiln-bench');
const BIG_FILE_BYTES = Number(process.env.KILN_BENCH_BIG_MIB ?? 1024) * 1024 * 1024;
const PARTS = ['trivial', 'upload'] as const;
const only = process.env.KILN_BENCH_ONLY;
if (only !== undefined && !PARTS.includes(only as (typeof PARTS)[number])) {
  console.error(`KILN_BENCH_ONLY must be one of ${PARTS.join(', ')}`);
  process.exit(2);
}
const TRIVIAL_WARMUP = 5;
const TRIVIAL_ROUNDS = 30;
const UPLOAD_RUNS = 5;

interface Server {
  child: ChildProcess;
  address: string;
  stop(): Promise<void>;
}

/** `bin/kiln serve ARGS`, once it prints where it listens. */
function startServer(args: string[], home: string): Promise<Server> {
  const child = spawn(kiln, ['serve', ...args], { env: { ...process.env, KILN_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return new Promise((ready, fail) => {
    let stdout = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
      const match = /^listening on (\S+)\n/m.exec(stdout);
      if (match)
        ready({
          child,
          address: match[1] as string,
          async stop() {
            child.kill('SIGTERM');
            await exited;
          },
        });
    });
    void exited.then(() => fail(new Error(`kiln serve exited: ${stderr}`)));
  });
}

function request(input: Node, name: string, script: string): BuildRequest {
  return shellBuildRequest(script, { inputs: [{ name: parsePathComponent(name), node: input }] });
}

/** Runs a build to its end; its wall time in ms, failing unless it finished. */
async function timedBuild(service: { build(r: BuildRequest): AsyncIterable<BuildEvent> }, req: BuildRequest): Promise<number> {
  const started = performance.now();
  let last: BuildEvent | undefined;
  for await (const event of service.build(req)) last = event;
  if (last?.type !== 'finished') throw new Error(`the build did not finish: ${JSON.stringify(last)}`);
  return performance.now() - started;
}

async function rssOf(pid: number): Promise<number> {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

async function makeBigFile(path: string): Promise<void> {
  const stat = await fs.stat(path).catch(() => undefined);
  if (stat?.size === BIG_FILE_BYTES) return;
  const handle = await fs.open(path, 'w');
  const chunk = Buffer.allocUnsafe(16 << 20);
  for (let written = 0; written < BIG_FILE_BYTES; written += chunk.byteLength) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.byteLength, BIG_FILE_BYTES - written));
  }
  await handle.close();
}

async function trivial(work: string, rows: Row[]): Promise<void> {
  const local = await openFsCastore(join(work, 'trivial-client-store'));
  const inputDir = join(work, 'trivial-input');
  await fs.mkdir(inputDir);
  await fs.writeFile(join(inputDir, 'greeting'), 'hi\n');
  const { node } = await importPath(inputDir, local);
  const req = request(node, 'tiny', 'echo hi > $out');
  const inProcess = new BwrapBuildService({ ...local, sandboxDir: join(work, 'sandbox-local'), concurrency: 2 });
  const server = await startServer(
    [
      '--listen',
      `unix://${join(work, 'trivial.sock')}`,
      '--store',
      join(work, 'trivial-server-store'),
      '--builder',
      `bwrap://${join(work, 'sandbox-remote')}?concurrency=2`,
    ],
    join(work, 'trivial-home'),
  );
  const remote = new GrpcBuildService({ url: `grpc+${server.address}`, ...local });
  try {
    for (let i = 0; i < TRIVIAL_WARMUP; i++) {
      await timedBuild(inProcess, req);
      await timedBuild(remote, req);
    }
    const localMs: number[] = [];
    const remoteMs: number[] = [];
    for (let i = 0; i < TRIVIAL_ROUNDS; i++) {
      localMs.push(await timedBuild(inProcess, req));
      remoteMs.push(await timedBuild(remote, req));
    }
    const ratio = median(remoteMs) / median(localMs);
    const p90 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.9)] as number;
    rows.push({
      metric: `trivial build, median of ${TRIVIAL_ROUNDS} (p90)`,
      kiln: `remote over a unix socket ${median(remoteMs).toFixed(1)} ms (${p90(remoteMs).toFixed(1)})`,
      reference: `in-process ${median(localMs).toFixed(1)} ms (${p90(localMs).toFixed(1)})`,
      ratio: `${ratio.toFixed(2)}×`,
      target: '≤ 1.5×',
      ok: ratio <= 1.5,
    });
  } finally {
    await remote.close();
    await server.stop();
    await inProcess.close();
    await local.close();
  }
}

/** Flushes dirty pages, so a run does not pay for the writeback of the one before. */
async function settle(): Promise<void> {
  await new Promise<void>((done, fail) =>
    spawn('sync')
      .once('exit', () => done())
      .once('error', fail),
  );
}

async function upload(work: string, rows: Row[]): Promise<void> {
  await fs.mkdir(benchDir, { recursive: true });
  const bigFile = join(benchDir, 'big.bin');
  await makeBigFile(bigFile);
  const local = await openFsCastore(join(work, 'upload-client-store'));
  const { node } = await importPath(bigFile, local);
  const req = request(node, 'big', 'test -s /nix/store/big && echo ok > $out');
  try {
    for (const store of ['disk'] as const) {
      const firsts: { bytes: number; ms: number }[] = [];
      const seconds: { bytes: number; blobs: number; ms: number }[] = [];
      let peakRss = 0;
      for (let run = 0; run < UPLOAD_RUNS; run++) {
        const dir = join(work, `upload-server-${run}`);
        await settle();
        const server = await startServer(
          [
            '--listen',
            '127.0.0.1:0',
            '--store',
            store === 'disk' ? join(dir, 'store') : 'memory://',
            '--builder',
            `bwrap://${join(work, 'sandbox-remote')}`,
          ],
          dir,
        );
        const summaries: { bytesSent: number; blobsSent: number; ms: number }[] = [];
        const clients: GrpcBuildService[] = [];
        const client = () => {
          const created = new GrpcBuildService({ url: `grpc+http://${server.address}`, ...local, onUpload: (s) => summaries.push(s) });
          clients.push(created);
          return created;
        };
        const sampler = setInterval(() => {
          rssOf(server.child.pid as number).then(
            (rss) => {
              peakRss = Math.max(peakRss, rss);
            },
            () => {},
          );
        }, 50);
        try {
          await timedBuild(client(), req);
          clearInterval(sampler);
          await timedBuild(client(), req); // a second client, as a second `kiln build` would be: it asks the server
        } finally {
          clearInterval(sampler);
          for (const created of clients) await created.close();
          await server.stop();
          await fs.rm(dir, { recursive: true, force: true });
        }
        const [first, second] = summaries as [(typeof summaries)[0], (typeof summaries)[0]];
        if (first.bytesSent !== BIG_FILE_BYTES) throw new Error(`the first build uploaded ${first.bytesSent} bytes`);
        firsts.push({ bytes: first.bytesSent, ms: first.ms });
        seconds.push({ bytes: second.bytesSent, blobs: second.blobsSent, ms: second.ms });
        console.log(
          `upload to a ${store} store, run ${run + 1}: ${mb(first.bytesSent, first.ms / 1000)} (${(first.ms / 1000).toFixed(2)} s); second build uploaded ${second.bytesSent} bytes after ${second.ms.toFixed(1)} ms of checks`,
        );
      }
      const rates = firsts.map((f) => f.bytes / 1e6 / (f.ms / 1000));
      rows.push({
        metric: `upload a ${BIG_FILE_BYTES / 2 ** 20} MiB input over TCP loopback, server ${store} store`,
        kiln: `${median(rates).toFixed(0)} MB/s median`,
        reference: `runs ${rates.map((r) => r.toFixed(0)).join('/')} MB/s; server peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`,
        ratio: '-',
        target: '≥ 400 MB/s',
        ok: median(rates) >= 400,
      });
      const maxSecond = Math.max(...seconds.map((s) => s.bytes));
      rows.push({
        metric: `second build with the same input (${store} store): uploaded`,
        kiln: `${maxSecond} bytes, ${Math.max(...seconds.map((s) => s.blobs))} blobs`,
        reference: `asking took ${median(seconds.map((s) => s.ms)).toFixed(1)} ms median`,
        ratio: '-',
        target: '0 bytes',
        ok: maxSecond === 0,
      });
    }
  } finally {
    await local.close();
  }
}

async function main(): Promise<void> {
  await fs.mkdir(benchDir, { recursive: true });
  const work = await fs.mkdtemp(join(benchDir, 'remote-'));
  await fs.chmod(work, 0o711); // build users traverse it to their sandboxes
  const rows: Row[] = [];
  try {
    if (only === undefined || only === 'trivial') await trivial(work, rows);
    if (only === undefined || only === 'upload') await upload(work, rows);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
  printTable('remote builds', rows);
  if (rows.some((r) => r.ok === false)) process.exitCode = 1;
}

await main();
