/**
 * gRPC blob throughput between two Kiln processes (both JS) over a Unix
 * socket (or TCP): upload (BlobService.Put) and download (BlobService.Read,
 * verified by the client) of one random blob, 512 MiB by default. The
 * server's store is MemoryBlobService (`--store memory`, the default, so the
 * figures measure the gRPC path) or the embedded disk store (`--store fs`, a
 * temporary one whose writes mostly land in the page cache).
 *
 * This process only orchestrates: the server and the client are children
 * started with `nodeFlags`. The default is `RECOMMENDED_NODE_FLAGS`: V8 starts
 * with a small old generation and then runs a full GC every ~10 MB of
 * ArrayBuffers, i.e. dozens per second at these rates, which halves
 * throughput. Pass `--node-flags ''` to measure without them.
 *
 *   node --import tsx bench/grpc-blob-throughput.ts [--mib 512] [--runs 3] [--tcp] [--store memory|fs] [--node-flags '...']
 *
 * Also exported as `measureGrpcBlobThroughput` for bench/castore.ts.
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MemoryBlobService } from '../src/castore/blob-service/memory.js';
import { MemoryDirectoryService } from '../src/castore/directory-service/memory.js';
import { openFsCastore } from '../src/castore/fs-store.js';
import { grpcBlobServiceFromUrl, startCastoreServer } from '../src/castore/grpc/index.js';
import { median } from './harness.js';

/** Node flags Kiln processes moving blobs should run with (see the header). */
export const RECOMMENDED_NODE_FLAGS = ['--initial-old-space-size=128'];

export interface GrpcBlobThroughputOptions {
  /** Blob size in bytes. */
  bytes: number;
  /** Where the socket and a disk store live (a fresh subdirectory is made and removed). Default: the OS temp dir. */
  dir?: string;
  /** Measurements per direction; the median is reported. Default 3. */
  runs?: number;
  /** Use TCP on 127.0.0.1 instead of a Unix socket. */
  tcp?: boolean;
  /** The server's blob store; default memory. */
  store?: 'fs' | 'memory';
  /** Node flags for the server and client processes; default `RECOMMENDED_NODE_FLAGS`. */
  nodeFlags?: string[];
  /** Tuning knobs (defaults: the library's): Read message size, Put message size, stream window (both ends). */
  readChunkSize?: number;
  putChunkSize?: number;
  streamWindowSize?: number;
}

export interface GrpcBlobThroughput {
  /** Median upload rate, MB/s (10^6 bytes per second). */
  uploadMBps: number;
  /** Median download rate, MB/s. */
  downloadMBps: number;
  uploadSamples: number[];
  downloadSamples: number[];
  /** Median CPU seconds per transfer (user + system, all threads), client and server; undefined without /proc. */
  uploadCpuSeconds?: { client: number; server: number };
  downloadCpuSeconds?: { client: number; server: number };
}

type Tuning = Pick<GrpcBlobThroughputOptions, 'readChunkSize' | 'putChunkSize' | 'streamWindowSize'>;

const READY = 'kiln-bench-ready ';

/** CPU seconds (user + system) a process has used so far, from /proc; undefined elsewhere. */
async function processCpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** Reads `READY <value>` lines from a child; resolves with the first value. */
function readyLine(child: ReturnType<typeof spawn>): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (data: Buffer) => {
      out += data.toString();
      const line = out
        .split('\n')
        .slice(0, -1)
        .find((l) => l.startsWith(READY)); // complete lines only
      if (line) resolve(line.slice(READY.length).trim());
    });
    child.once('exit', (code) => reject(new Error(`bench child exited with ${code}`)));
    child.once('error', reject);
  });
}

/** Child: serve a store until stdin closes. */
async function serve(listen: string, store: string, storeDir: string, tuning: Tuning): Promise<void> {
  const fsStore = store === 'fs' ? await openFsCastore(storeDir) : undefined;
  const server = await startCastoreServer({
    listen,
    ...tuning,
    blobService: fsStore?.blobService ?? new MemoryBlobService(),
    directoryService: fsStore?.directoryService ?? new MemoryDirectoryService(),
  });
  process.stdout.write(`${READY}${server.url}\n`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('end', resolve));
  await server.close({ graceMs: 0 });
  await fsStore?.close();
}

/**
 * Child: generate the blob, then run each transfer when the parent writes a
 * line ("upload" or "download") on stdin, answering `READY <seconds>`.
 */
async function runClient(url: string, bytes: number, tuning: Tuning): Promise<void> {
  const data = randomFillSync(Buffer.allocUnsafe(bytes));
  const client = await grpcBlobServiceFromUrl(url, { putChunkSize: tuning.putChunkSize, streamWindowSize: tuning.streamWindowSize });
  const sourceChunk = 1 << 20; // as a file reader would hand them over
  function* pieces() {
    for (let offset = 0; offset < data.byteLength; offset += sourceChunk) yield data.subarray(offset, offset + sourceChunk);
  }
  let digest: Awaited<ReturnType<typeof client.put>>['digest'] | undefined;
  process.stdout.write(`${READY}generated\n`);
  let pending = '';
  for await (const input of process.stdin) {
    pending += input.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const command of lines) {
      const started = performance.now();
      if (command === 'upload') {
        ({ digest } = await client.put(pieces()));
      } else if (command === 'download') {
        const stream = digest && (await client.read(digest));
        if (!stream) throw new Error('nothing uploaded to download');
        let received = 0;
        for await (const chunk of stream) received += chunk.byteLength;
        if (received !== bytes) throw new Error(`downloaded ${received} bytes, expected ${bytes}`);
      } else {
        throw new Error(`unknown command ${command}`);
      }
      process.stdout.write(`${READY}${(performance.now() - started) / 1000}\n`);
    }
  }
  await client.close();
}

export async function measureGrpcBlobThroughput(options: GrpcBlobThroughputOptions): Promise<GrpcBlobThroughput> {
  const runs = options.runs ?? 3;
  const parent = options.dir ?? os.tmpdir();
  await fs.mkdir(parent, { recursive: true });
  const dir = await fs.mkdtemp(join(parent, 'grpc-bench-'));
  const tuningArgs: string[] = [];
  if (options.readChunkSize) tuningArgs.push('--read-chunk', String(options.readChunkSize));
  if (options.putChunkSize) tuningArgs.push('--put-chunk', String(options.putChunkSize));
  if (options.streamWindowSize) tuningArgs.push('--window', String(options.streamWindowSize));
  const nodeArgs = [...(options.nodeFlags ?? RECOMMENDED_NODE_FLAGS), '--import', 'tsx', new URL(import.meta.url).pathname];
  const startChild = (args: string[]) =>
    spawn(process.execPath, [...nodeArgs, ...args, ...tuningArgs], { stdio: ['pipe', 'pipe', 'inherit'] });
  const listen = options.tcp ? '127.0.0.1:0' : `unix://${join(dir, 'castore.sock')}`;
  const server = startChild(['--serve', listen, '--store', options.store ?? 'memory', '--store-dir', join(dir, 'store')]);
  let client: ReturnType<typeof spawn> | undefined;
  try {
    const url = await readyLine(server);
    const started = startChild(['--client', url, '--bytes', String(options.bytes)]);
    client = started;
    let lines = '';
    const answers: string[] = [];
    let wake: (() => void) | undefined;
    started.stdout?.on('data', (data: Buffer) => {
      lines += data.toString();
      const complete = lines.split('\n');
      lines = complete.pop() ?? '';
      for (const line of complete) if (line.startsWith(READY)) answers.push(line.slice(READY.length));
      wake?.();
    });
    const exited = new Promise<never>((_, reject) => started.once('exit', (code) => reject(new Error(`bench client exited with ${code}`))));
    exited.catch(() => {});
    const nextAnswer = async (): Promise<string> => {
      while (answers.length === 0) await Promise.race([new Promise<void>((resolve) => (wake = resolve)), exited]);
      return answers.shift() as string;
    };
    await nextAnswer(); // blob generated
    const samples = { upload: [] as number[], download: [] as number[] };
    const cpu = {
      upload: { client: [] as number[], server: [] as number[] },
      download: { client: [] as number[], server: [] as number[] },
    };
    for (const direction of ['upload', 'download'] as const) {
      for (let i = 0; i < runs; i++) {
        const server0 = await processCpuSeconds(server.pid as number);
        const client0 = await processCpuSeconds(started.pid as number);
        started.stdin?.write(`${direction}\n`);
        const seconds = Number(await nextAnswer());
        const server1 = await processCpuSeconds(server.pid as number);
        const client1 = await processCpuSeconds(started.pid as number);
        samples[direction].push(options.bytes / 1e6 / seconds);
        if (server0 !== undefined && server1 !== undefined && client0 !== undefined && client1 !== undefined) {
          cpu[direction].client.push(client1 - client0);
          cpu[direction].server.push(server1 - server0);
        }
      }
    }
    const cpuMedian = (s: { client: number[]; server: number[] }) =>
      s.client.length === runs ? { client: median(s.client), server: median(s.server) } : undefined;
    return {
      uploadMBps: median(samples.upload),
      downloadMBps: median(samples.download),
      uploadSamples: samples.upload,
      downloadSamples: samples.download,
      uploadCpuSeconds: cpuMedian(cpu.upload),
      downloadCpuSeconds: cpuMedian(cpu.download),
    };
  } finally {
    for (const child of [client, server]) {
      if (!child) continue;
      const gone = new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
      child.stdin?.end();
      await gone;
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      client: { type: 'string' },
      bytes: { type: 'string' },
      store: { type: 'string', default: 'memory' },
      'store-dir': { type: 'string' },
      mib: { type: 'string', default: '512' },
      runs: { type: 'string', default: '3' },
      tcp: { type: 'boolean', default: false },
      'node-flags': { type: 'string' },
      'read-chunk': { type: 'string' },
      'put-chunk': { type: 'string' },
      window: { type: 'string' },
    },
  });
  const numberOption = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  const tuning = {
    readChunkSize: numberOption(values['read-chunk']),
    putChunkSize: numberOption(values['put-chunk']),
    streamWindowSize: numberOption(values.window),
  };
  if (values.store !== 'fs' && values.store !== 'memory') throw new Error(`--store must be memory or fs, not ${values.store}`);
  if (values.serve) {
    await serve(values.serve, values.store, values['store-dir'] ?? join(os.tmpdir(), `kiln-bench-store-${process.pid}`), tuning);
  } else if (values.client) {
    await runClient(values.client, Number(values.bytes), tuning);
  } else {
    const nodeFlags = values['node-flags'] === undefined ? RECOMMENDED_NODE_FLAGS : values['node-flags'].split(' ').filter(Boolean);
    const bytes = Number(values.mib) * 1024 * 1024;
    const result = await measureGrpcBlobThroughput({
      bytes,
      runs: Number(values.runs),
      tcp: values.tcp,
      store: values.store,
      nodeFlags,
      ...tuning,
    });
    const fmt = (samples: number[]) => samples.map((s) => s.toFixed(0)).join(', ');
    const cpuNote = (cpu?: { client: number; server: number }) =>
      cpu ? `; CPU per transfer: client ${cpu.client.toFixed(2)} s, server ${cpu.server.toFixed(2)} s` : '';
    const transport = values.tcp ? 'TCP 127.0.0.1' : 'a unix socket';
    console.log(
      `gRPC blob ${values.mib} MiB over ${transport}, ${values.store} store, separate processes, node flags: ${nodeFlags.join(' ') || '(none)'}`,
    );
    console.log(`upload   ${result.uploadMBps.toFixed(0)} MB/s (runs: ${fmt(result.uploadSamples)})${cpuNote(result.uploadCpuSeconds)}`);
    console.log(
      `download ${result.downloadMBps.toFixed(0)} MB/s (runs: ${fmt(result.downloadSamples)})${cpuNote(result.downloadCpuSeconds)}`,
    );
  }
}
