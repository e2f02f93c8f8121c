/**
 * `npm run bench:castore`: castore throughput against reference tools
 * measured in the same run.
 *
 * Data (generated once under $KILN_BENCH_DIR, default /var/tmp/kiln-bench):
 * one 1 GiB random file; a tree of 20,000 files of 1–64 KiB in nested
 * directories, every 7th executable, plus symlinks.
 *
 * Measures: hashing vs `b3sum --num-threads 1`; `kiln castore import` of the
 * tree vs `nix-store --add`; re-import vs first import; peak RSS importing
 * the 1 GiB file; gRPC blob upload/download over a unix socket.
 */
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { B3Digest, importPath, MemoryDirectoryService } from '../src/castore/index.js';
import { type ByteSource, toChunks } from '../src/common/async-iterable.js';
import { createBlake3 } from '../src/common/blake3.js';
import { measureGrpcBlobThroughput } from './grpc-blob-throughput.js';
import { mb, median, medianSeconds, printTable, type Row, timeCommand } from './harness.js';

const repo = resolve(import.meta.dirname, '..');
const kiln = join(repo, 'bin/kiln');
const benchDir = resolve(process.env.KILN_BENCH_DIR ?? '/var/tmp/kiln-bench');
const BIG_FILE_BYTES = Number(process.env.KILN_BENCH_BIG_MIB ?? 1024) * 1024 * 1024;
const TREE_FILES = Number(process.env.KILN_BENCH_FILES ?? 20_000);

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

async function makeBigFile(path: string): Promise<void> {
  if ((await exists(path)) && (await fs.stat(path)).size === BIG_FILE_BYTES) return;
  const handle = await fs.open(path, 'w');
  const chunk = Buffer.allocUnsafe(16 << 20);
  for (let written = 0; written < BIG_FILE_BYTES; written += chunk.byteLength) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.byteLength, BIG_FILE_BYTES - written));
  }
  await handle.close();
}

/** 20 top directories × 10 subdirectories × N files, sizes 1–64 KiB, every 7th executable, a symlink per subdirectory. */
async function makeTree(root: string): Promise<{ files: number; bytes: number }> {
  const marker = join(root, '.complete');
  const perDir = Math.ceil(TREE_FILES / 200);
  if (await exists(marker)) return JSON.parse(await fs.readFile(marker, 'utf8'));
  await fs.rm(root, { recursive: true, force: true });
  let files = 0;
  let bytes = 0;
  const data = Buffer.allocUnsafe(64 * 1024);
  for (let top = 0; top < 20 && files < TREE_FILES; top++) {
    for (let sub = 0; sub < 10 && files < TREE_FILES; sub++) {
      const dir = join(root, `pkg-${top}`, `mod-${sub}`);
      await fs.mkdir(dir, { recursive: true });
      for (let i = 0; i < perDir && files < TREE_FILES; i++, files++) {
        const size = 1024 + Math.floor(Math.random() * 63 * 1024);
        randomFillSync(data, 0, size);
        await fs.writeFile(join(dir, `file-${i}.dat`), data.subarray(0, size), { mode: files % 7 === 0 ? 0o755 : 0o644 });
        bytes += size;
      }
      await fs.symlink(`../mod-${(sub + 1) % 10}/file-0.dat`, join(dir, 'neighbour'));
    }
  }
  const summary = { files, bytes };
  await fs.writeFile(marker, JSON.stringify(summary));
  return summary;
}

/** A blob service that only hashes what it is given: importing into it measures read + BLAKE3 through the real import path. */
const hashOnlyBlobService = {
  async has() {
    return false;
  },
  async put(source: ByteSource) {
    const hasher = createBlake3();
    let size = 0;
    for await (const chunk of toChunks(source)) {
      hasher.update(chunk);
      size += chunk.byteLength;
    }
    return { digest: B3Digest.fromBytes(hasher.digest()), size };
  },
};

async function hashFileSeconds(path: string): Promise<number> {
  const started = performance.now();
  await importPath(path, { blobService: hashOnlyBlobService, directoryService: new MemoryDirectoryService() });
  return (performance.now() - started) / 1000;
}

/** `nix-store --add` of a hardlinked copy with a fresh name, so Nix really copies it; returns seconds and the store path. */
async function nixStoreAdd(path: string): Promise<{ seconds: number; storePath: string }> {
  const { seconds, stdout } = await timeCommand(['nix-store', '--add', path]);
  return { seconds, storePath: stdout.trim() };
}

/** Flush dirty pages so one run's writeback does not slow the next. */
async function settle(): Promise<void> {
  await timeCommand(['sync']);
}

async function main(): Promise<void> {
  await fs.mkdir(benchDir, { recursive: true });
  const bigFile = join(benchDir, 'big.bin');
  const tree = join(benchDir, 'tree');
  console.log(`benchmark data in ${benchDir} (${BIG_FILE_BYTES / 2 ** 20} MiB file, ${TREE_FILES} files)`);
  await makeBigFile(bigFile);
  const treeInfo = await makeTree(tree);
  await timeCommand([kiln, 'castore', 'import', tree, '--store', 'memory://']); // warm the page cache
  await hashFileSeconds(bigFile); // warm the page cache
  const rows: Row[] = [];

  const b3sum = await medianSeconds(3, async () => (await timeCommand(['b3sum', '--num-threads', '1', bigFile])).seconds);
  const ours = await medianSeconds(3, () => hashFileSeconds(bigFile));
  rows.push({
    metric: 'hash 1 GiB file (read + BLAKE3)',
    kiln: mb(BIG_FILE_BYTES, ours),
    reference: `${mb(BIG_FILE_BYTES, b3sum)} b3sum -t1`,
    ratio: `${(ours / b3sum).toFixed(2)}× time`,
    target: '≤ 1.5× b3sum time',
    ok: ours / b3sum <= 1.5,
  });

  if (process.env.KILN_BENCH_ONLY === 'hash') {
    printTable('castore', rows);
    return;
  }
  const stores = join(benchDir, 'stores');
  await fs.rm(stores, { recursive: true, force: true });
  const bigStore = join(stores, 'big');
  await settle();
  const bigFirst = await timeCommand([kiln, 'castore', 'import', bigFile, '--store', bigStore], { measureRss: true });
  const bigAgain = await timeCommand([kiln, 'castore', 'import', bigFile, '--store', bigStore], { measureRss: true });
  const rssMb = (bigFirst.maxRssBytes ?? Number.NaN) / 1e6;
  rows.push({
    metric: 'import 1 GiB file (CLI, fresh store)',
    kiln: mb(BIG_FILE_BYTES, bigFirst.seconds),
    reference: '-',
    ratio: '-',
    target: '-',
  });
  rows.push({
    metric: 'peak RSS importing 1 GiB file',
    kiln: `${rssMb.toFixed(0)} MB`,
    reference: '-',
    ratio: '-',
    target: '< 200 MB',
    ok: rssMb < 200,
  });
  rows.push({
    metric: 're-import 1 GiB file',
    kiln: `${bigAgain.seconds.toFixed(2)} s`,
    reference: `${bigFirst.seconds.toFixed(2)} s first`,
    ratio: `${(bigFirst.seconds / bigAgain.seconds).toFixed(1)}× faster`,
    target: '≥ 5× faster',
    ok: bigFirst.seconds / bigAgain.seconds >= 5,
  });

  // Interleaved runs, nothing deleted until the end: freeing a large tree slows the writes that follow it.
  const nixRuns: number[] = [];
  /** `sync` right after each `nix-store --add`: the writeback Nix leaves behind, which Kiln's import waits for (it commits directories only once their blobs are on disk). */
  const nixSyncs: number[] = [];
  const firstImports: number[] = [];
  const nixPaths: string[] = [];
  let treeStore = '';
  for (let i = 0; i < 3; i++) {
    const copy = join(benchDir, `nix-copy-${i}`);
    await fs.rm(copy, { recursive: true, force: true });
    await timeCommand(['cp', '-al', tree, copy]);
    await settle();
    const nixRun = await nixStoreAdd(copy);
    nixRuns.push(nixRun.seconds);
    nixPaths.push(nixRun.storePath);
    nixSyncs.push((await timeCommand(['sync'])).seconds);
    treeStore = join(stores, `tree-${i}`);
    firstImports.push((await timeCommand([kiln, 'castore', 'import', tree, '--store', treeStore])).seconds);
  }
  const nix = median(nixRuns);
  const nixDurable = median(nixRuns.map((seconds, i) => seconds + (nixSyncs[i] as number)));
  const treeFirst = median(firstImports);
  const treeAgain = await medianSeconds(
    3,
    async () => (await timeCommand([kiln, 'castore', 'import', tree, '--store', treeStore])).seconds,
  );
  const runs = (values: number[]) => values.map((v) => v.toFixed(2)).join('/');
  rows.push({
    metric: `import tree (${treeInfo.files} files, ${(treeInfo.bytes / 1e6).toFixed(0)} MB)`,
    kiln: `${(treeInfo.files / treeFirst).toFixed(0)} files/s, ${mb(treeInfo.bytes, treeFirst)}`,
    reference:
      `${(treeInfo.files / nix).toFixed(0)} files/s nix-store --add (runs ${runs(nixRuns)} s, then sync ${runs(nixSyncs)} s;` +
      ` kiln ${runs(firstImports)} s; with Nix's sync ${(nixDurable / treeFirst).toFixed(1)}×)`,
    ratio: `${(nix / treeFirst).toFixed(1)}× faster`,
    target: '≥ 3× faster than nix',
    ok: nix / treeFirst >= 3,
  });
  rows.push({
    metric: 're-import unchanged tree',
    kiln: `${treeAgain.toFixed(2)} s`,
    reference: `${treeFirst.toFixed(2)} s first`,
    ratio: `${(treeFirst / treeAgain).toFixed(1)}× faster`,
    target: '≥ 5× faster',
    ok: treeFirst / treeAgain >= 5,
  });

  for (const store of ['memory', 'fs'] as const) {
    await settle(); // the tree imports' writeback would otherwise land on these transfers
    const grpc = await measureGrpcBlobThroughput({ bytes: 512 * 1024 * 1024, dir: benchDir, store, runs: 5 });
    const samples = (values: number[]) => values.map((v) => v.toFixed(0)).join('/');
    rows.push({
      metric: `gRPC blob upload, unix socket, ${store} store`,
      kiln: `${grpc.uploadMBps.toFixed(0)} MB/s`,
      reference: `runs ${samples(grpc.uploadSamples)}`,
      ratio: '-',
      target: '≥ 400 MB/s',
      ok: grpc.uploadMBps >= 400,
    });
    rows.push({
      metric: `gRPC blob download, unix socket, ${store} store`,
      kiln: `${grpc.downloadMBps.toFixed(0)} MB/s`,
      reference: `runs ${samples(grpc.downloadSamples)}`,
      ratio: '-',
      target: '≥ 400 MB/s',
      ok: grpc.downloadMBps >= 400,
    });
  }

  printTable('castore', rows);
  await timeCommand(['nix-store', '--delete', ...nixPaths]).catch(() => {});
  for (let i = 0; i < 3; i++) await fs.rm(join(benchDir, `nix-copy-${i}`), { recursive: true, force: true });
  await fs.rm(stores, { recursive: true, force: true });
  if (rows.some((r) => r.ok === false)) process.exitCode = 1;
}

await main();
