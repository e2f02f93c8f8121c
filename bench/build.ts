/**
 * `npm run bench:build`: local sandbox builds against reference tools
 * measured in the same run, in the same process where it matters.
 *
 * Everything lives in one temporary directory under /var/tmp (removed at
 * the end): a disk castore, the sandbox directory (on the same filesystem, so
 * inputs are hardlinked from the store), the reference sandboxes, the Nix
 * expressions and the generated input tree. The Nix store paths the bench
 * produces are deleted at the end.
 *
 * 1. `trivial`: one tiny input, `echo hi > $out`, through the BuildService
 *    API, for bwrap://, oci://?runtime=runc and oci://?runtime=crun,
 *    interleaved round by round with: a bare `bwrap` of the same command
 *    started through kiln-launcher, as Kiln starts sandboxes, as an unprivileged user (every namespace
 *    unshared, read-only tmpfs root, /proc, /dev, /tmp, /etc, the input
 *    bound read-only, a writable scratch dir, /bin/sh); bare `runc run` and
 *    `crun run` of a pre-made bundle doing the same (the `runc spec`
 *    defaults without /sys, plus a user namespace like Kiln's); and
 *    `nix-build` of an equivalent derivation with a fresh nonce (static
 *    busybox as the builder, sandbox on, no substituters). Each reference
 *    writes a fresh output file, as a build does; none joins cgroups or
 *    loads a seccomp filter.
 * 2. `throughput`: 200 independent trivial builds, concurrency 2, against one
 *    `nix-build -j2` of 200 fresh trivial derivations; also 200 bare runs of
 *    each reference sandbox at concurrency 2 (what this machine can do at
 *    best) and the CPU time each build costs the whole machine.
 * 3. `inputs`: a deterministic 1 GiB / 20,000-file tree (plus a symlink per
 *    directory, every 7th file executable) imported into the disk castore;
 *    the first build with it as input materializes it (its time minus the
 *    trivial build's gives the rate), and later builds with the same input
 *    must start within 20 ms of the trivial build.
 *
 * `KILN_BENCH_ONLY=trivial|throughput|inputs` runs one part. Targets are
 * printed as met or MISSED; the exit status does not depend on them.
 */
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { bwrapArgs } from '../src/build/bwrap/bwrap-args.js';
import { type BuildEvent, type BuildRequest, type BuildService, buildServiceFromUrl } from '../src/build/index.js';
import { withoutHybridCgroups } from '../src/build/oci/oci-build-service.js';
import { ociSpec } from '../src/build/oci/oci-spec.js';
import { type FsCastore, importPath, type Node, openFsCastore, parsePathComponent } from '../src/castore/index.js';
import { median, printTable, runBare } from './harness.js';

const PARTS = ['trivial', 'throughput', 'inputs'] as const;
type Part = (typeof PARTS)[number];
const only = process.env.KILN_BENCH_ONLY;
if (only !== undefined && !PARTS.includes(only as Part)) {
  console.error(`KILN_BENCH_ONLY must be one of ${PARTS.join(', ')}`);
  process.exit(2);
}
const runs = (part: Part) => only === undefined || only === part;

const TRIVIAL_ROUNDS = 30;
const WARMUP_ROUNDS = 3;
const THROUGHPUT_BUILDS = 200;
const THROUGHPUT_CONCURRENCY = 2;
const THROUGHPUT_REPEATS = 3;
const TREE_FILES = 20_000;
const TREE_BYTES = 1024 ** 3;
const FIRST_BUILD_REPEATS = 3;
const SECOND_BUILD_ROUNDS = 15;
/** Host ids of the reference sandboxes' user (and of an OCI container's root). */
const REF_UID = 65534;
const REF_ROOT_UID = 65533;
const BUSYBOX = '/bin/busybox';
const SCRIPT = 'echo hi > $out';
const RUNTIMES = ['bwrap', 'runc', 'crun'] as const;
type Runtime = (typeof RUNTIMES)[number];

// ---------------------------------------------------------------------------
// Results

interface Result {
  metric: string;
  kiln: string;
  reference: string;
  ratio: string;
  target: string;
  /** undefined: nothing to judge (informational, or the reference failed). */
  met?: boolean;
}

function printResults(title: string, results: Result[]): void {
  printTable(
    title,
    results.map(({ met, ...row }) => ({ ...row, ...(met === undefined ? {} : { ok: met }) })),
  );
}

const ms = (value: number) => `${value.toFixed(1)} ms`;
const progress = (line: string) => console.error(`# ${line}`);

/** A ratio row: Kiln's time against the reference's, at most `limit`× of it. */
function slowdownRow(metric: string, kiln: number, reference: number | undefined, referenceName: string, limit: number): Result {
  const ratio = reference === undefined ? undefined : kiln / reference;
  return {
    metric,
    kiln: ms(kiln),
    reference: reference === undefined ? `${referenceName}: unavailable` : `${ms(reference)} ${referenceName}`,
    ratio: ratio === undefined ? '-' : `${ratio.toFixed(2)}× its time`,
    target: `≤ ${limit}× ${referenceName}`,
    ...(ratio === undefined ? {} : { met: ratio <= limit }),
  };
}

/** A ratio row: Kiln at least `factor`× faster than Nix (compares times, or rates with `rate`). */
function speedupRow(
  metric: string,
  kiln: number,
  nix: number | undefined,
  unit: (v: number) => string,
  factor: number,
  rate = false,
): Result {
  const speedup = nix === undefined ? undefined : rate ? kiln / nix : nix / kiln;
  return {
    metric,
    kiln: unit(kiln),
    reference: nix === undefined ? 'nix-build: unavailable' : `${unit(nix)} nix-build`,
    ratio: speedup === undefined ? '-' : rate ? `kiln/nix = ${speedup.toFixed(2)}×` : `nix/kiln = ${speedup.toFixed(2)}×`,
    target: `≥ ${factor}× faster than nix`,
    ...(speedup === undefined ? {} : { met: speedup >= factor }),
  };
}

// ---------------------------------------------------------------------------
// Processes

/** Runs a command for its output; rejects with its stderr on failure. */
function output(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve({ stdout, ms: performance.now() - started });
      else reject(new Error(`${argv[0]} exited with ${code}: ${stderr.slice(-1500).trim()}`));
    });
  });
}

/** Flushes dirty pages so one measurement's writeback does not slow the next. */
async function settle(): Promise<void> {
  await output(['sync']);
}

// ---------------------------------------------------------------------------
// Kiln builds

/** The trivial build: `echo hi > $out` with one tiny input; `nonce` makes each request distinct. */
function trivialRequest(input: Node, nonce: string): BuildRequest {
  const text = (s: string) => new TextEncoder().encode(s);
  return {
    inputs: [{ name: parsePathComponent('input'), node: input }],
    commandArgs: ['/bin/sh', '-c', SCRIPT],
    workingDir: 'out',
    scratchPaths: ['out'],
    inputsDir: 'inputs',
    outputs: ['out/result'],
    environmentVars: [
      { key: 'NONCE', value: text(nonce) },
      { key: 'out', value: text('/out/result') },
    ],
    constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true },
    additionalFiles: [],
    refscanNeedles: [],
  };
}

/** Runs one build to its last event; returns its wall time in ms, or throws with the reason it failed. */
async function kilnBuild(service: BuildService, request: BuildRequest): Promise<number> {
  const started = performance.now();
  let last: BuildEvent | undefined;
  for await (const event of service.build(request)) last = event;
  const elapsed = performance.now() - started;
  if (last?.type !== 'finished') {
    const why = last?.type === 'failed' ? `${last.message}\n${last.logTail}` : `ended with ${last?.type ?? 'no event'}`;
    throw new Error(`${service.name} build failed: ${why}`);
  }
  return elapsed;
}

let nonceCounter = 0;
const nonce = () => `${process.pid}-${Date.now()}-${nonceCounter++}`;

function kilnUrl(runtime: Runtime, sandboxDir: string, params: Record<string, string> = {}): string {
  const query = new URLSearchParams(params);
  if (runtime === 'bwrap') return `bwrap://${sandboxDir}${query.size ? `?${query}` : ''}`;
  query.set('runtime', runtime);
  query.set('sandbox-dir', sandboxDir);
  return `oci://?${query}`;
}

/** The services that can run here, and why the others cannot. */
async function openServices(
  store: FsCastore,
  sandboxDir: string,
  params: Record<string, string> = {},
): Promise<Partial<Record<Runtime, BuildService>>> {
  const services: Partial<Record<Runtime, BuildService>> = {};
  for (const runtime of RUNTIMES) {
    try {
      services[runtime] = await buildServiceFromUrl(kilnUrl(runtime, sandboxDir, params), store);
    } catch (error) {
      console.log(`${runtime}: unavailable: ${(error as Error).message}`);
    }
  }
  return services;
}

// ---------------------------------------------------------------------------
// Reference sandboxes

interface References {
  /** Runs the reference sandbox once (a fresh output file, as a Kiln build writes); returns its wall time in ms. */
  run(runtime: Runtime, id: string): Promise<number>;
  /** Like `run`, but leaves the previous output in place (for runs at once). */
  runConcurrently(runtime: Runtime, id: string): Promise<number>;
}

/**
 * The trivial build's sandbox without Kiln: a tiny input, a scratch dir and
 * /etc on disk, the bwrap arguments and OCI bundle Kiln's own backends
 * would make for it (bwrapArgs, ociSpec), run by the bare runtimes.
 */
async function makeReferences(dir: string, inputNode: Node): Promise<References> {
  const input = join(dir, 'input');
  const scratch = join(dir, 'scratch');
  const etc = join(dir, 'etc');
  await fs.mkdir(input, { recursive: true });
  await fs.writeFile(join(input, 'greeting'), 'hello\n');
  await fs.mkdir(etc);
  await fs.writeFile(join(etc, 'passwd'), 'nixbld:x:1000:100:Nix build user:/out:/noshell\n');
  await fs.mkdir(scratch);
  await fs.chown(scratch, REF_UID, REF_UID);
  const request = trivialRequest(inputNode, 'reference');
  const layout = { etcDir: etc, scratchDirs: [scratch], inputPaths: [input], extraFiles: [], shell: BUSYBOX };
  const invocation = bwrapArgs(request, layout);
  const bwrap = ['bwrap', ...invocation.options.map((a) => Buffer.from(a).toString()), ...invocation.command];

  const bundle = join(dir, 'bundle');
  const rootfs = join(bundle, 'rootfs');
  for (const d of ['proc', 'dev', 'tmp', 'etc', 'out', 'inputs/input', 'bin']) await fs.mkdir(join(rootfs, d), { recursive: true });
  await fs.chmod(join(rootfs, 'tmp'), 0o1777);
  await fs.writeFile(join(rootfs, 'bin/sh'), '');
  await fs.chmod(bundle, 0o711);
  const config = ociSpec(request, layout, { buildUid: REF_UID, rootUid: REF_ROOT_UID });
  await fs.writeFile(join(bundle, 'config.json'), JSON.stringify(config));
  const argv = (runtime: Runtime, id: string): readonly string[] => {
    if (runtime === 'bwrap') return bwrap;
    if (runtime === 'runc') return ['runc', 'run', '--bundle', bundle, id];
    return withoutHybridCgroups(['crun', 'run', '--bundle', bundle, id]);
  };
  // bwrap runs as an unprivileged user, as Kiln runs it; the OCI runtimes run as root and map ids themselves.
  const runConcurrently = (runtime: Runtime, id: string) =>
    runBare(argv(runtime, id), runtime === 'bwrap' ? { uid: REF_UID, gid: REF_UID } : {});
  return {
    runConcurrently,
    async run(runtime, id) {
      await fs.rm(join(scratch, 'result'), { force: true });
      return runConcurrently(runtime, id);
    },
  };
}

// ---------------------------------------------------------------------------
// Nix

class Nix {
  readonly #dir: string;
  readonly #outputs: string[] = [];
  #files = 0;
  /** Why nix-build cannot run here, once known. */
  unavailable: string | undefined;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** A directory with bin/busybox for `builtins.path`, after checking the build users exist. */
  static async create(dir: string): Promise<Nix> {
    const nix = new Nix(dir);
    await fs.mkdir(join(dir, 'busybox/bin'), { recursive: true });
    await fs.copyFile(BUSYBOX, join(dir, 'busybox/bin/busybox'));
    await fs.chmod(join(dir, 'busybox/bin/busybox'), 0o555);
    try {
      await output(['nix-build', '--version']);
    } catch (error) {
      nix.unavailable = `nix-build does not run: ${(error as Error).message}`;
    }
    if (!nix.unavailable) {
      try {
        await output(['getent', 'group', 'nixbld']);
      } catch {
        nix.unavailable = 'no nixbld group: a sandboxed nix-build as root needs build users (group nixbld with members)';
      }
    }
    return nix;
  }

  /** A trivial derivation: busybox writes "hi" to $out. */
  #derivation(name: string, nonceExpression: string): string {
    return (
      `derivation { name = ${name}; system = builtins.currentSystem; builder = "\${bb}/bin/busybox"; ` +
      `args = [ "sh" "-c" ${JSON.stringify(SCRIPT)} ]; nonce = ${nonceExpression}; }`
    );
  }

  /** Builds `count` fresh trivial derivations in one `nix-build -j2`; returns the wall time in ms (undefined if Nix is unavailable). */
  async build(count: number, jobs = 1): Promise<number | undefined> {
    if (this.unavailable) return undefined;
    const file = join(this.#dir, `bench-${this.#files++}.nix`);
    const fresh = JSON.stringify(nonce());
    const body =
      count === 1
        ? this.#derivation('"kiln-bench-trivial"', fresh)
        : `builtins.genList (i: ${this.#derivation('"kiln-bench-trivial-" + toString i', `${fresh} + toString i`)}) ${count}`;
    const expression = `let bb = builtins.path { path = ${join(this.#dir, 'busybox')}; name = "kiln-bench-busybox"; }; in ${body}\n`;
    await fs.writeFile(file, expression);
    const argv = ['nix-build', '--no-out-link', '-j', String(jobs), '--option', 'sandbox', 'true', '--option', 'substituters', '', file];
    try {
      const run = await output(argv);
      const paths = run.stdout.split('\n').filter(Boolean);
      if (paths.length !== count) throw new Error(`expected ${count} store paths, got ${paths.length}`);
      this.#outputs.push(...paths);
      return run.ms;
    } catch (error) {
      this.unavailable = `nix-build failed: ${(error as Error).message}`;
      console.log(this.unavailable);
      return undefined;
    }
  }

  /** Deletes the outputs, their derivations and the busybox source from the Nix store. */
  async cleanup(): Promise<void> {
    if (this.#outputs.length === 0) return;
    const derivers = (await output(['nix-store', '--query', '--deriver', ...this.#outputs]).catch(() => ({ stdout: '' }))).stdout
      .split('\n')
      .filter((p) => p.startsWith('/nix/store/'));
    const sources = derivers.length
      ? (await output(['nix-store', '--query', '--references', derivers[0] as string]).catch(() => ({ stdout: '' }))).stdout
          .split('\n')
          .filter((p) => p.endsWith('-kiln-bench-busybox'))
      : [];
    try {
      await output(['nix-store', '--delete', ...this.#outputs, ...derivers, ...sources]);
    } catch (error) {
      console.log(`could not delete the bench's Nix store paths: ${(error as Error).message}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Parts

async function trivialPart(store: FsCastore, work: string, input: Node, nix: Nix): Promise<Result[]> {
  const services = await openServices(store, join(work, 'sandbox'));
  const refs = await makeReferences(join(work, 'reference'), input);
  const kiln: Record<Runtime, number[]> = { bwrap: [], runc: [], crun: [] };
  const bare: Record<Runtime, number[]> = { bwrap: [], runc: [], crun: [] };
  const bareFailed: Partial<Record<Runtime, string>> = {};
  const nixRuns: number[] = [];
  progress(`trivial builds: ${WARMUP_ROUNDS} warm-up and ${TRIVIAL_ROUNDS} measured rounds`);
  const kilnRun = async (runtime: Runtime, measured: boolean) => {
    const service = services[runtime];
    if (!service) return;
    try {
      const elapsed = await kilnBuild(service, trivialRequest(input, nonce()));
      if (measured) kiln[runtime].push(elapsed);
    } catch (error) {
      console.log(`kiln ${runtime} failed, left out: ${(error as Error).message}`);
      await service.close();
      delete services[runtime];
      kiln[runtime] = [];
    }
  };
  const bareRun = async (runtime: Runtime, measured: boolean, round: number) => {
    if (bareFailed[runtime]) return;
    try {
      const elapsed = await refs.run(runtime, `kiln-bench-${process.pid}-${round}`);
      if (measured) bare[runtime].push(elapsed);
    } catch (error) {
      bareFailed[runtime] = (error as Error).message;
      console.log(`bare ${runtime} failed: ${bareFailed[runtime]}`);
    }
  };
  const nixRun = async (measured: boolean) => {
    const elapsed = await nix.build(1);
    if (measured && elapsed !== undefined) nixRuns.push(elapsed);
  };
  const random = prng(1);
  for (let round = 0; round < WARMUP_ROUNDS + TRIVIAL_ROUNDS; round++) {
    const measured = round >= WARMUP_ROUNDS;
    const tasks = [
      ...RUNTIMES.flatMap((runtime) => [() => kilnRun(runtime, measured), () => bareRun(runtime, measured, round)]),
      () => nixRun(measured),
    ];
    // Shuffled each round, so no measurement always follows the same one (nix-build's fsyncs, say).
    for (let i = tasks.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [tasks[i], tasks[j]] = [tasks[j] as () => Promise<void>, tasks[i] as () => Promise<void>];
    }
    for (const task of tasks) await task();
  }
  for (const service of Object.values(services)) await service.close();

  const med = (values: number[]) => (values.length ? median(values) : undefined);
  const nixMedian = med(nixRuns);
  const results: Result[] = [];
  const limits: Record<Runtime, number> = { bwrap: 2, runc: 1.3, crun: 1.3 };
  const names: Record<Runtime, string> = { bwrap: 'bwrap://', runc: 'oci://?runtime=runc', crun: 'oci://?runtime=crun' };
  for (const runtime of RUNTIMES) {
    const kilnMedian = med(kiln[runtime]);
    if (kilnMedian === undefined) continue;
    const reference = runtime === 'bwrap' ? 'bare bwrap' : `bare ${runtime} run`;
    results.push(slowdownRow(`trivial build, ${names[runtime]}`, kilnMedian, med(bare[runtime]), reference, limits[runtime]));
  }
  for (const runtime of RUNTIMES) {
    const kilnMedian = med(kiln[runtime]);
    if (kilnMedian === undefined) continue;
    results.push(speedupRow(`trivial build, ${names[runtime]} vs Nix`, kilnMedian, nixMedian, ms, 5));
  }
  const spread = (values: number[]) =>
    values.length ? `${ms(Math.min(...values))}–${ms(Math.max(...values))} (p90 ${ms(percentile(values, 0.9))})` : '-';
  console.log(`\ntrivial build samples (min–max): ${TRIVIAL_ROUNDS} rounds`);
  for (const runtime of RUNTIMES) console.log(`  kiln ${runtime}: ${spread(kiln[runtime])}; bare ${runtime}: ${spread(bare[runtime])}`);
  console.log(`  nix-build: ${spread(nixRuns)}${nix.unavailable ? ` (${nix.unavailable})` : ''}`);
  return results;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** Runs `count` calls of `run` with at most `concurrency` at once; returns runs per second. */
async function runPool(count: number, concurrency: number, run: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) await run(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - started) / 1000);
}

async function throughputPart(store: FsCastore, work: string, input: Node, nix: Nix): Promise<Result[]> {
  const services = await openServices(store, join(work, 'sandbox'), { concurrency: String(THROUGHPUT_CONCURRENCY) });
  const refs = await makeReferences(join(work, 'reference-throughput'), input);
  const bareRates: Record<Runtime, number[]> = { bwrap: [], runc: [], crun: [] };
  const rates: Record<Runtime, number[]> = { bwrap: [], runc: [], crun: [] };
  const nixRates: number[] = [];
  const cpuPerBuild: Record<Runtime, CpuPerBuild[]> = { bwrap: [], runc: [], crun: [] };
  const nixCpuPerBuild: CpuPerBuild[] = [];
  progress(`throughput: ${THROUGHPUT_BUILDS} builds at concurrency ${THROUGHPUT_CONCURRENCY}, ${THROUGHPUT_REPEATS} times each`);
  for (let repeat = 0; repeat < THROUGHPUT_REPEATS; repeat++) {
    for (const runtime of RUNTIMES) {
      const service = services[runtime];
      if (!service) continue;
      await settle();
      const cpu = await cpuSample();
      const started = performance.now();
      const builds = Array.from({ length: THROUGHPUT_BUILDS }, () => kilnBuild(service, trivialRequest(input, nonce())));
      const failure = await Promise.all(builds).then(
        () => undefined,
        (error: Error) => error,
      );
      if (failure) {
        console.log(`kiln ${runtime} failed, left out: ${failure.message}`);
        await Promise.allSettled(builds);
        await service.close();
        delete services[runtime];
        rates[runtime] = [];
        continue;
      }
      rates[runtime].push(THROUGHPUT_BUILDS / ((performance.now() - started) / 1000));
      cpuPerBuild[runtime].push(await cpuSince(cpu, THROUGHPUT_BUILDS));
      await settle();
      const id = (i: number) => `kiln-bench-${process.pid}-${repeat}-${i}`;
      const bareRate = await runPool(THROUGHPUT_BUILDS, THROUGHPUT_CONCURRENCY, (i) => refs.runConcurrently(runtime, id(i))).catch(
        (error: Error) => {
          console.log(`bare ${runtime} failed: ${error.message}`);
          return undefined;
        },
      );
      if (bareRate !== undefined) bareRates[runtime].push(bareRate);
    }
    await settle();
    const cpu = await cpuSample();
    const nixMs = await nix.build(THROUGHPUT_BUILDS, THROUGHPUT_CONCURRENCY);
    if (nixMs !== undefined) {
      nixRates.push(THROUGHPUT_BUILDS / (nixMs / 1000));
      nixCpuPerBuild.push(await cpuSince(cpu, THROUGHPUT_BUILDS));
    }
  }
  for (const service of Object.values(services)) await service.close();
  const perSecond = (v: number) => `${v.toFixed(1)} builds/s`;
  const nixRate = nixRates.length ? median(nixRates) : undefined;
  const results: Result[] = [];
  for (const runtime of RUNTIMES) {
    if (rates[runtime].length === 0) continue;
    const name = runtime === 'bwrap' ? 'bwrap://' : `oci://?runtime=${runtime}`;
    results.push(
      speedupRow(
        `${THROUGHPUT_BUILDS} builds, concurrency ${THROUGHPUT_CONCURRENCY}, ${name}`,
        median(rates[runtime]),
        nixRate,
        perSecond,
        5,
        true,
      ),
    );
  }
  for (const runtime of RUNTIMES) {
    if (bareRates[runtime].length === 0) continue;
    const bareRate = median(bareRates[runtime]);
    const name = runtime === 'bwrap' ? 'bare bwrap' : `bare ${runtime} run`;
    results.push({
      metric: `${THROUGHPUT_BUILDS} runs, concurrency ${THROUGHPUT_CONCURRENCY}, ${name} (no Kiln: this machine's ceiling)`,
      kiln: '-',
      reference: `${bareRate.toFixed(1)} runs/s`,
      ratio: nixRate === undefined ? '-' : `bare/nix = ${(bareRate / nixRate).toFixed(2)}×`,
      target: '-',
    });
  }
  const list = (values: number[]) => values.map((v) => v.toFixed(1)).join('/');
  const cpu = (samples: CpuPerBuild[]) =>
    samples.length
      ? `${median(samples.map((c) => c.machineMs)).toFixed(1)} ms of CPU (${median(samples.map((c) => c.benchProcessMs)).toFixed(1)} ms in this process)`
      : '-';
  console.log(`\nCPU per build (median; 2 cores give at most 2000 ms of CPU per second; other load on the machine counts too):`);
  for (const runtime of RUNTIMES) if (cpuPerBuild[runtime].length) console.log(`  kiln ${runtime}: ${cpu(cpuPerBuild[runtime])}`);
  console.log(`  nix-build -j2: ${cpu(nixCpuPerBuild)}`);
  console.log(`\nthroughput runs (builds/s): ${RUNTIMES.map((r) => `${r} ${list(rates[r])}`).join('; ')}; nix -j2 ${list(nixRates)}`);
  console.log(`bare runs (runs/s): ${RUNTIMES.map((r) => `${r} ${list(bareRates[r])}`).join('; ')}`);
  return results;
}

interface CpuSample {
  readonly processMicros: number;
  readonly busyTicks: number;
}
interface CpuPerBuild {
  /** CPU time of the whole machine (every process, kernel included) per build. */
  readonly machineMs: number;
  /** Of which in this process (Kiln's in-process build service). */
  readonly benchProcessMs: number;
}

/** Busy time of the whole machine (from /proc/stat, in clock ticks of 10 ms) and of this process. */
async function cpuSample(): Promise<CpuSample> {
  const fields = ((await fs.readFile('/proc/stat', 'utf8')).split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  const busyTicks = fields.slice(0, 8).reduce((a, b) => a + b, 0) - (fields[3] as number) - (fields[4] as number);
  const usage = process.cpuUsage();
  return { processMicros: usage.user + usage.system, busyTicks };
}

async function cpuSince(start: CpuSample, builds: number): Promise<CpuPerBuild> {
  const end = await cpuSample();
  return {
    machineMs: ((end.busyTicks - start.busyTicks) * 10) / builds,
    benchProcessMs: (end.processMicros - start.processMicros) / 1000 / builds,
  };
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * 20 top directories × 10 subdirectories × 100 files whose sizes follow a
 * log-uniform spread (about 0.4 KB to 0.4 MB) scaled to sum to exactly
 * `TREE_BYTES`; contents are an AES-CTR keystream per file (incompressible,
 * all distinct, the same on every run); every 7th file executable; a
 * symlink per subdirectory.
 */
async function makeTree(root: string): Promise<{ files: number; bytes: number; executables: number }> {
  const random = prng(0x6b696c6e);
  const weights = Array.from({ length: TREE_FILES }, () => 2 ** (10 * random()));
  const total = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((w / total) * TREE_BYTES));
  sizes[sizes.length - 1] = (sizes.at(-1) as number) + TREE_BYTES - sizes.reduce((a, b) => a + b, 0);
  const key = Buffer.alloc(32, 7);
  const zeros = Buffer.alloc(Math.max(...sizes));
  const perDir = TREE_FILES / 200;
  let index = 0;
  let executables = 0;
  for (let top = 0; top < 20; top++) {
    for (let sub = 0; sub < 10; sub++) {
      const dir = join(root, `pkg-${top}`, `mod-${sub}`);
      await fs.mkdir(dir, { recursive: true });
      const writes: Promise<void>[] = [];
      for (let i = 0; i < perDir; i++, index++) {
        const iv = Buffer.alloc(16);
        iv.writeUInt32BE(index, 0);
        const data = createCipheriv('aes-256-ctr', key, iv).update(zeros.subarray(0, sizes[index]));
        const executable = index % 7 === 0;
        if (executable) executables++;
        writes.push(fs.writeFile(join(dir, `file-${i}.dat`), data, { mode: executable ? 0o755 : 0o644 }));
      }
      await Promise.all(writes);
      await fs.symlink(`../mod-${(sub + 1) % 10}/file-0.dat`, join(dir, 'neighbour'));
    }
  }
  return { files: TREE_FILES, bytes: TREE_BYTES, executables };
}

/** Regular files under `dir` with more than one link (hardlinked from the store) and with one (copied). */
async function linkCounts(dir: string): Promise<{ linked: number; copied: number; copiedBytes: number }> {
  const counts = { linked: 0, copied: 0, copiedBytes: 0 };
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const stat = await fs.stat(join(entry.parentPath, entry.name));
    if (stat.nlink > 1) counts.linked++;
    else {
      counts.copied++;
      counts.copiedBytes += stat.size;
    }
  }
  return counts;
}

async function inputsPart(store: FsCastore, work: string, tinyInput: Node): Promise<Result[]> {
  const tree = join(work, 'tree');
  progress(`inputs: generating ${TREE_FILES} files, ${TREE_BYTES / 2 ** 20} MiB`);
  const made = await makeTree(tree);
  progress('inputs: importing the tree into the disk castore');
  const importStarted = performance.now();
  const imported = await importPath(tree, store);
  const importSeconds = (performance.now() - importStarted) / 1000;
  const bigInput = imported.node;

  const results: Result[] = [];
  results.push({
    metric: `import the tree (${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB) into the disk castore`,
    kiln: `${(made.bytes / 1e9 / importSeconds).toFixed(2)} GB/s (${importSeconds.toFixed(2)} s)`,
    reference: '-',
    ratio: '-',
    target: '-',
  });

  // Fresh sandbox directories (so a cold inputs cache) for each first build; the trivial build on each is measured first.
  const firstMs: number[] = [];
  const trivialMs: number[] = [];
  let service: BuildService | undefined;
  let sandboxDir = '';
  const kilnTrivial = async (s: BuildService) => trivialMs.push(await kilnBuild(s, trivialRequest(tinyInput, nonce())));
  progress(`inputs: ${FIRST_BUILD_REPEATS} first builds (cold inputs cache), then ${SECOND_BUILD_ROUNDS} later builds`);
  for (let repeat = 0; repeat < FIRST_BUILD_REPEATS; repeat++) {
    await service?.close();
    sandboxDir = join(work, `sandbox-inputs-${repeat}`);
    service = await buildServiceFromUrl(kilnUrl('bwrap', sandboxDir), store);
    for (let i = 0; i < 5; i++) await kilnTrivial(service);
    await settle();
    firstMs.push(await kilnBuild(service, trivialRequest(bigInput, nonce())));
  }
  if (!service) throw new Error('no bwrap service');
  // The inputs cache keeps a directory input at inputs/d-<digest hex>; count the whole cache if that layout changed.
  const cached = join(sandboxDir, 'inputs', bigInput.type === 'directory' ? `d-${bigInput.digest.toHex()}` : '');
  const links = await linkCounts(existsSync(cached) ? cached : join(sandboxDir, 'inputs'));
  // Later builds with the same input, interleaved with trivial builds on the same service.
  const secondMs: number[] = [];
  const pairedTrivialMs: number[] = [];
  await settle();
  for (let round = 0; round < SECOND_BUILD_ROUNDS; round++) {
    pairedTrivialMs.push(await kilnBuild(service, trivialRequest(tinyInput, nonce())));
    secondMs.push(await kilnBuild(service, trivialRequest(bigInput, nonce())));
  }
  await service.close();

  const trivial = median(trivialMs);
  const first = median(firstMs);
  const materializeSeconds = (first - trivial) / 1000;
  const rate = made.bytes / 1e9 / materializeSeconds;
  results.push({
    metric: `first build with the tree as input (materialize ${(made.bytes / 1e9).toFixed(2)} GB)`,
    kiln: `${rate.toFixed(2)} GB/s (${ms(first)} build; runs ${firstMs.map((v) => v.toFixed(0)).join('/')} ms)`,
    reference: `${ms(trivial)} trivial build`,
    ratio: `${(materializeSeconds * 1000).toFixed(0)} ms materializing`,
    target: '≥ 1 GB/s',
    met: rate >= 1,
  });
  results.push({
    metric: 'materialized files hardlinked from the store',
    kiln: `${links.linked} of ${links.linked + links.copied}`,
    reference: `${links.copied} copied (${(links.copiedBytes / 1e6).toFixed(0)} MB)`,
    ratio: '-',
    target: '-',
  });
  const second = median(secondMs);
  const pairedTrivial = median(pairedTrivialMs);
  const extra = second - pairedTrivial;
  results.push({
    metric: 'later build with the same input (cached)',
    kiln: ms(second),
    reference: `${ms(pairedTrivial)} trivial build`,
    ratio: `${extra >= 0 ? '+' : ''}${ms(extra)}`,
    target: '≤ +20 ms',
    met: extra <= 20,
  });
  return results;
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const work = await fs.mkdtemp('/var/tmp/kiln-bench-build-');
  // Build users (unprivileged host ids) must traverse to their build directories.
  await fs.chmod(work, 0o711);
  progress(`bench data in ${work}`);
  const load = async () => (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  console.log(`load average at start: ${await load()} (other work on the machine skews every figure; ratios are measured interleaved)`);
  let store: FsCastore | undefined;
  let nix: Nix | undefined;
  try {
    store = await openFsCastore(join(work, 'store'));
    nix = await Nix.create(join(work, 'nix'));
    if (nix.unavailable) console.log(nix.unavailable);
    const tiny = join(work, 'tiny-input');
    await fs.mkdir(tiny);
    await fs.writeFile(join(tiny, 'greeting'), 'hello\n');
    const input = (await importPath(tiny, store)).node;
    const tables: [string, Result[]][] = [];
    if (runs('trivial')) {
      const results = await trivialPart(store, work, input, nix);
      printResults('build: trivial build (median of 30)', results);
      tables.push(['trivial', results]);
    }
    if (runs('throughput')) {
      const results = await throughputPart(store, work, input, nix);
      printResults('build: throughput', results);
      tables.push(['throughput', results]);
    }
    if (runs('inputs')) {
      const results = await inputsPart(store, work, input);
      printResults('build: 1 GiB / 20,000-file input', results);
      tables.push(['inputs', results]);
    }
    const judged = tables.flatMap(([, results]) => results).filter((r) => r.met !== undefined);
    console.log(`\n${judged.filter((r) => r.met).length} of ${judged.length} targets met; load average at the end: ${await load()}`);
  } finally {
    progress('cleaning up');
    await nix?.cleanup();
    await store?.close();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
