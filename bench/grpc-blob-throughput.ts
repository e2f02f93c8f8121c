/**
 * gRPC blob throughput over a Unix socket, server and client in separate
 * processes (both Kiln, JS): upload (BlobService.Put) and download
 * (BlobService.Read, verified by the client) of one random blob, 512 MiB by
 * default. The server's store is the embedded disk store (`--store fs`,
 * the default; a temporary one, so writes mostly hit the page cache) or
 * MemoryBlobService (`--store memory`).
 *
 *   node --import tsx bench/grpc-blob-throughput.ts [--mib 512] [--runs 3] [--tcp] [--store fs|memory]
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

export interface GrpcBlobThroughputOptions {
  /** Blob size in bytes. */
  bytes: number;
  /** Where the socket lives (a fresh subdirectory is made and removed). */
  dir?: string;
  /** Measurements per direction; the median is reported. Default 3. */
  runs?: number;
  /** Use TCP on 127.0.0.1 instead of a Unix socket. */
  tcp?: boolean;
  /** Size of the pieces the client hands to `put` (as a file reader would). Default 1 MiB. */
  sourceChunkSize?: number;
  /** The server's blob store: the embedded disk store (default) or memory. */
  store?: 'fs' | 'memory';
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

const READY = 'kiln-bench-server-ready ';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Child process: serve a store until stdin closes. */
async function serve(listen: string, store: string, storeDir: string, tuning: { readChunkSize?: number; streamWindowSize?: number }): Promise<void> {
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

export async function measureGrpcBlobThroughput(options: GrpcBlobThroughputOptions): Promise<GrpcBlobThroughput> {
  const runs = options.runs ?? 3;
  const chunkSize = options.sourceChunkSize ?? 1 << 20;
  const parent = options.dir ?? os.tmpdir();
  await fs.mkdir(parent, { recursive: true });
  const dir = await fs.mkdtemp(join(parent, 'grpc-bench-'));
  const listen = options.tcp ? '127.0.0.1:0' : `unix://${join(dir, 'castore.sock')}`;
  const store = options.store ?? 'fs';
  const serverArgs = ['--serve', listen, '--store', store, '--store-dir', join(dir, 'store')];
  if (options.readChunkSize) serverArgs.push('--read-chunk', String(options.readChunkSize));
  if (options.streamWindowSize) serverArgs.push('--window', String(options.streamWindowSize));
  const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, ...serverArgs], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (data: Buffer) => {
        out += data.toString();
        const line = out.split('\n').slice(0, -1).find((l) => l.startsWith(READY)); // complete lines only
        if (line) resolve(line.slice(READY.length).trim());
      });
      child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
      child.once('error', reject);
    });
    const data = randomFillSync(Buffer.allocUnsafe(options.bytes));
    const client = await grpcBlobServiceFromUrl(url, { putChunkSize: options.putChunkSize, streamWindowSize: options.streamWindowSize });
    try {
      const uploadSamples: number[] = [];
      const downloadSamples: number[] = [];
      const cpu = { upload: { client: [] as number[], server: [] as number[] }, download: { client: [] as number[], server: [] as number[] } };
      const measure = async (direction: 'upload' | 'download', transfer: () => Promise<void>): Promise<number> => {
        const server0 = await processCpuSeconds(child.pid as number);
        const client0 = await processCpuSeconds(process.pid);
        const started = performance.now();
        await transfer();
        const seconds = (performance.now() - started) / 1000;
        const server1 = await processCpuSeconds(child.pid as number);
        const client1 = await processCpuSeconds(process.pid);
        if (server0 !== undefined && server1 !== undefined && client0 !== undefined && client1 !== undefined) {
          cpu[direction].client.push(client1 - client0);
          cpu[direction].server.push(server1 - server0);
        }
        return options.bytes / 1e6 / seconds;
      };
      function* pieces() {
        for (let offset = 0; offset < data.byteLength; offset += chunkSize) yield data.subarray(offset, offset + chunkSize);
      }
      let digest;
      for (let i = 0; i < runs; i++) {
        uploadSamples.push(
          await measure('upload', async () => {
            ({ digest } = await client.put(pieces()));
          }),
        );
      }
      const uploaded = digest;
      if (!uploaded) throw new Error('nothing uploaded');
      for (let i = 0; i < runs; i++) {
        downloadSamples.push(
          await measure('download', async () => {
            const stream = await client.read(uploaded);
            if (!stream) throw new Error('uploaded blob is missing');
            let received = 0;
            for await (const chunk of stream) received += chunk.byteLength;
            if (received !== options.bytes) throw new Error(`downloaded ${received} bytes, expected ${options.bytes}`);
          }),
        );
      }
      const cpuMedian = (samples: { client: number[]; server: number[] }) =>
        samples.client.length === runs ? { client: median(samples.client), server: median(samples.server) } : undefined;
      return {
        uploadMBps: median(uploadSamples),
        downloadMBps: median(downloadSamples),
        uploadSamples,
        downloadSamples,
        uploadCpuSeconds: cpuMedian(cpu.upload),
        downloadCpuSeconds: cpuMedian(cpu.download),
      };
    } finally {
      await client.close();
    }
  } finally {
    child.stdin.end();
    await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      store: { type: 'string', default: 'fs' },
      'store-dir': { type: 'string' },
      mib: { type: 'string', default: '512' },
      runs: { type: 'string', default: '3' },
      tcp: { type: 'boolean', default: false },
      'read-chunk': { type: 'string' },
      'put-chunk': { type: 'string' },
      window: { type: 'string' },
    },
  });
  const numberOption = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  const tuning = { readChunkSize: numberOption(values['read-chunk']), putChunkSize: numberOption(values['put-chunk']), streamWindowSize: numberOption(values.window) };
  if (values.store !== 'fs' && values.store !== 'memory') throw new Error(`--store must be fs or memory, not ${values.store}`);
  if (values.serve) {
    await serve(values.serve, values.store, values['store-dir'] ?? join(os.tmpdir(), `kiln-bench-store-${process.pid}`), tuning);
  } else {
    const bytes = Number(values.mib) * 1024 * 1024;
    const result = await measureGrpcBlobThroughput({ bytes, runs: Number(values.runs), tcp: values.tcp, store: values.store, ...tuning });
    const fmt = (samples: number[]) => samples.map((s) => s.toFixed(0)).join(', ');
    const cpuNote = (cpu?: { client: number; server: number }) => (cpu ? `; CPU per transfer: client ${cpu.client.toFixed(2)} s, server ${cpu.server.toFixed(2)} s` : '');
    console.log(`gRPC blob ${values.mib} MiB over ${values.tcp ? 'TCP 127.0.0.1' : 'a unix socket'}, ${values.store} store, separate processes`);
    console.log(`upload   ${result.uploadMBps.toFixed(0)} MB/s (runs: ${fmt(result.uploadSamples)})${cpuNote(result.uploadCpuSeconds)}`);
    console.log(`download ${result.downloadMBps.toFixed(0)} MB/s (runs: ${fmt(result.downloadSamples)})${cpuNote(result.downloadCpuSeconds)}`);
  }
}
