/**
 * `npm run bench:nix`: Kiln's Nix builds against Nix's, in the same run.
 *
 * - A graph of 100 trivial derivations in a chain-and-fan shape (9 levels
 *   of 11; each node depends on the one below it and on the first node of
 *   the level below; one root over the top level), instantiated afresh for
 *   every run (a nonce in every name), built by `bin/kiln nix build -j2` on
 *   bwrap (fresh KILN_HOME) and by `nix-build -j2` in Nix's sandbox,
 *   interleaved; medians. Target: Kiln at least 3× faster. For context, the
 *   same number of trivial BuildRequests straight on Kiln's bwrap builder,
 *   2 at a time (what the build layer alone costs), and the same sandbox run
 *   that many times by bare bwrap, 2 at a time (what any bubblewrap-based
 *   builder costs on this machine).
 * - NAR hashing of a 1 GiB tree (a 512 MiB file and 2,048 files of 256 KiB
 *   in 32 directories): Kiln streaming the NAR from its disk castore, as it
 *   does for every output, against `nix-hash --type sha256` on the files.
 *   Target: at least as fast.
 *
 * Data goes under $KILN_BENCH_DIR (default /var/tmp/kiln-bench). Needs
 * root, bubblewrap and Nix with `sandbox = true` (scripts/install-deps.sh).
 * `KILN_BENCH_ONLY=graph|nar` runs one part. Exits 1 when a target is missed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { bwrapArgs } from '../src/build/bwrap/bwrap-args.js';
import { type BuildRequest, buildServiceFromUrl } from '../src/build/index.js';
import { importPath, type Node, openFsCastore, parsePathComponent } from '../src/castore/index.js';
import { formatNixHash } from '../src/nix/index.js';
import { narDigestOfNode } from '../src/nix-bridge/index.js';
import { mb, median, printTable, type Row, runBare, timeCommand } from './harness.js';

const benchDir = resolve(process.env.KILN_BENCH_DIR ?? '/var/tmp/kiln-bench');
const kiln = resolve(import.meta.dirname, '../bin/kiln');
const RUNS = Number(process.env.KILN_BENCH_RUNS ?? 3);
/** `KILN_BENCH_ONLY=graph|nar` runs one part. */
const only = process.env.KILN_BENCH_ONLY;
const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
if (only !== undefined && only !== 'graph' && only !== 'nar') throw new Error('KILN_BENCH_ONLY must be graph or nar');
const LEVELS = 9;
const WIDTH = 11;
const NAR_BIG_FILE = 512 * 2 ** 20;
const NAR_SMALL_FILES = 2048;
const NAR_SMALL_SIZE = 256 * 2 ** 10;

const GRAPH_NIX = `{ nonce }:
let
  busybox = builtins.path { path = ./bb; name = "busybox"; };
  bb = "\${busybox}/bin/busybox";
  mk = name: deps: builtins.derivation {
    name = "kiln-bench-\${nonce}-\${name}"; system = builtins.currentSystem; builder = bb;
    args = [ "sh" "-c" "echo \${name} \${toString deps} > $out" ];
  };
  node = k: j: if k == 0 then mk "n0-\${toString j}" [ ]
    else mk "n\${toString k}-\${toString j}" ([ (node (k - 1) j) ] ++ (if j == 0 then [ ] else [ (node (k - 1) 0) ]));
in mk "root" (builtins.genList (j: node ${LEVELS - 1} j) ${WIDTH})
`;

async function prepareGraph(dir: string): Promise<void> {
  await fs.mkdir(join(dir, 'bb', 'bin'), { recursive: true });
  await fs.copyFile('/bin/busybox', join(dir, 'bb', 'bin', 'busybox'));
  await fs.chmod(join(dir, 'bb', 'bin', 'busybox'), 0o755);
  await fs.writeFile(join(dir, 'graph.nix'), GRAPH_NIX);
}

/** The NAR tree, generated once (a stamp beside it records that it is complete). */
async function makeNarTree(root: string): Promise<number> {
  const stamp = `${root}.complete`;
  if (!existsSync(stamp)) {
    await fs.rm(root, { recursive: true, force: true });
    await fs.mkdir(root, { recursive: true });
    const big = await fs.open(join(root, 'big.bin'), 'w');
    for (let i = 0; i < NAR_BIG_FILE / 2 ** 20; i++) await big.write(randomBytes(2 ** 20));
    await big.close();
    for (let d = 0; d < 32; d++) {
      await fs.mkdir(join(root, `d${d}`));
      for (let f = 0; f < NAR_SMALL_FILES / 32; f++) await fs.writeFile(join(root, `d${d}`, `f${f}`), randomBytes(NAR_SMALL_SIZE));
    }
    await fs.writeFile(stamp, '');
  }
  return NAR_BIG_FILE + NAR_SMALL_FILES * NAR_SMALL_SIZE;
}

/** The trivial BuildRequest each derivation of the graph amounts to (`i` makes each one different). */
function trivialRequest(busybox: Node, i: number): BuildRequest {
  return {
    inputs: [{ name: parsePathComponent('busybox'), node: busybox }],
    commandArgs: ['/nix/store/busybox/bin/busybox', 'sh', '-c', `echo ${i} > $out`],
    workingDir: 'build',
    scratchPaths: ['build', 'nix/store'],
    inputsDir: 'nix/store',
    outputs: ['nix/store/out'],
    environmentVars: [{ key: 'out', value: Buffer.from('/nix/store/out') }],
    additionalFiles: [],
    refscanNeedles: [],
    constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true },
  };
}

/** Runs `count` jobs, 2 at a time; returns the wall time in seconds. */
async function twoAtATime(count: number, run: (i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next < count) await run(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

/** 100 trivial BuildRequests on the bwrap builder, 2 at a time: the build layer's own cost. */
async function buildLayerSeconds(dir: string, count: number): Promise<number> {
  const castore = await openFsCastore(join(dir, 'castore'));
  const busybox = await importPath(join(dir, 'bb'), castore);
  const builder = await buildServiceFromUrl(`bwrap://${join(dir, 'sandbox-layer')}`, castore);
  try {
    return await twoAtATime(count, async (i) => {
      for await (const event of builder.build(trivialRequest(busybox.node, i))) if (event.type === 'failed') throw new Error(event.message);
    });
  } finally {
    await builder.close();
    await castore.close();
  }
}

/**
 * The same sandbox run by bare bubblewrap (the arguments Kiln's builder
 * gives it, as an unprivileged user, nothing else), `count` times 2 at a
 * time: what any bubblewrap-based builder costs on this machine.
 */
async function bareBwrapSeconds(dir: string, count: number): Promise<number> {
  const uid = 65534;
  const root = join(dir, 'bare-bwrap');
  await fs.rm(root, { recursive: true, force: true });
  const etc = join(root, 'etc');
  await fs.mkdir(etc, { recursive: true });
  await fs.writeFile(join(etc, 'passwd'), 'nixbld:x:1000:100:Nix build user:/build:/noshell\n');
  const slots = [0, 1].map((slot) => join(root, `slot${slot}`));
  for (const slot of slots) {
    for (const scratch of ['build', 'store']) {
      await fs.mkdir(join(slot, scratch), { recursive: true });
      await fs.chown(join(slot, scratch), uid, uid);
    }
  }
  await fs.chmod(root, 0o755);
  const argv = (i: number) => {
    const slot = slots[i % 2] as string;
    const layout = {
      etcDir: etc,
      scratchDirs: [join(slot, 'build'), join(slot, 'store')],
      inputPaths: [join(dir, 'bb')],
      extraFiles: [],
      shell: '/bin/busybox',
    };
    // bwrapArgs reads only the input's name: its contents are bound from layout.inputPaths.
    const { options, command } = bwrapArgs(trivialRequest({ type: 'symlink', target: Buffer.from('unused') }, i), layout);
    return ['bwrap', ...options.map((a) => Buffer.from(a).toString()), ...command];
  };
  try {
    return await twoAtATime(count, (i) => runBare(argv(i), { uid, gid: uid }));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

/** The 100-derivation graph on Kiln and on Nix, with the build layer's and bare bwrap's ceilings. */
async function graphPart(): Promise<Row[]> {
  const rows: Row[] = [];
  const graphDir = join(benchDir, 'nix-graph');
  await prepareGraph(graphDir);

  const kilnRuns: number[] = [];
  const nixRuns: number[] = [];
  let drvCount = 0;
  for (let run = 0; run < RUNS; run++) {
    const nonce = randomBytes(5).toString('hex');
    const drv = execFileSync('nix-instantiate', [join(graphDir, 'graph.nix'), '--argstr', 'nonce', nonce], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    drvCount = execFileSync('nix-store', ['-qR', drv], { encoding: 'utf8' })
      .split('\n')
      .filter((p) => p.endsWith('.drv')).length;
    const home = join(graphDir, `home-${nonce}`);
    await fs.mkdir(home, { recursive: true });
    const runKiln = async () => {
      const { seconds, stdout } = await timeCommand(
        [kiln, 'nix', 'build', '-j2', '--json', '--builder', `bwrap://${join(graphDir, 'sandbox')}`, drv],
        { env: { KILN_HOME: home } },
      );
      kilnRuns.push(seconds);
      return JSON.parse(stdout).outputs.out as { path: string; narHash: string };
    };
    const runNix = async () => {
      nixRuns.push((await timeCommand(['nix-build', '-j2', '--no-out-link', drv])).seconds);
    };
    let ours: { path: string; narHash: string };
    if (run % 2 === 0) {
      ours = await runKiln();
      await runNix();
    } else {
      await runNix();
      ours = await runKiln();
    }
    const theirs = execFileSync('nix-store', ['-q', '--hash', ours.path], { encoding: 'utf8' }).trim();
    if (theirs !== ours.narHash) throw new Error(`Kiln and Nix disagree on ${ours.path}: ${ours.narHash} vs ${theirs}`);
    await fs.rm(home, { recursive: true, force: true });
  }
  const kilnGraph = median(kilnRuns);
  const nixGraph = median(nixRuns);
  const layer = await buildLayerSeconds(graphDir, drvCount);
  const bare = await bareBwrapSeconds(graphDir, drvCount);
  rows.push({
    metric: `${drvCount} derivations, chain and fan, -j2 (bwrap)`,
    kiln: `${kilnGraph.toFixed(2)} s (runs ${runs(kilnRuns)})`,
    reference: `nix-build -j2: ${nixGraph.toFixed(2)} s (runs ${runs(nixRuns)})`,
    ratio: `${(nixGraph / kilnGraph).toFixed(2)}× faster`,
    target: '≥ 3× faster than Nix',
    ok: nixGraph / kilnGraph >= 3,
  });
  rows.push({
    metric: `  for context: ${drvCount} trivial BuildRequests, 2 at a time (build layer alone)`,
    kiln: `${layer.toFixed(2)} s`,
    reference: '',
    ratio: `${(nixGraph / layer).toFixed(2)}× Nix`,
    target: '',
  });
  rows.push({
    metric: `  for context: ${drvCount} runs of the same sandbox by bare bwrap, 2 at a time (this machine's ceiling)`,
    kiln: `${bare.toFixed(2)} s`,
    reference: '',
    ratio: `${(nixGraph / bare).toFixed(2)}× Nix`,
    target: '',
  });

  return rows;
}

/** NAR hashing of a 1 GiB tree from the disk castore against nix-hash. */
async function narPart(): Promise<Row[]> {
  const rows: Row[] = [];
  const tree = join(benchDir, 'nar-tree');
  const bytes = await makeNarTree(tree);
  const castore = await openFsCastore(join(benchDir, 'nar-castore'));
  try {
    const { node } = await importPath(tree, castore);
    // Both sides read warm: nix-hash the tree's files, Kiln the castore's blob files.
    await timeCommand(['nix-hash', '--type', 'sha256', tree]);
    await narDigestOfNode(node, castore);
    const oursRuns: number[] = [];
    const nixHashRuns: number[] = [];
    let ourHash = '';
    let nixHash = '';
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now();
      const digest = await narDigestOfNode(node, castore);
      oursRuns.push((performance.now() - started) / 1000);
      ourHash = formatNixHash(digest.narHash, 'base16', { prefix: false });
      const nix = await timeCommand(['nix-hash', '--type', 'sha256', tree]);
      nixHashRuns.push(nix.seconds);
      nixHash = nix.stdout.trim();
    }
    if (ourHash !== nixHash) throw new Error(`NAR hashes differ: ${ourHash} vs nix-hash ${nixHash}`);
    const ours = median(oursRuns);
    const theirs = median(nixHashRuns);
    rows.push({
      metric: `NAR hash of a ${(bytes / 2 ** 30).toFixed(0)} GiB tree (${NAR_SMALL_FILES + 1} files)`,
      kiln: `${mb(bytes, ours)} (runs ${runs(oursRuns)} s)`,
      reference: `nix-hash --type sha256: ${mb(bytes, theirs)} (runs ${runs(nixHashRuns)} s)`,
      ratio: `${(ours / theirs).toFixed(2)}× time`,
      target: '≤ 1× nix-hash time',
      ok: ours <= theirs,
    });
  } finally {
    await castore.close();
  }
  return rows;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:nix needs root (sandboxed builds, Nix build users)');
  await fs.mkdir(benchDir, { recursive: true });
  await fs.chmod(benchDir, 0o755);
  const rows: Row[] = [];
  if (only !== 'nar') rows.push(...(await graphPart()));
  if (only !== 'graph') rows.push(...(await narPart()));
  printTable('nix', rows);
  if (rows.some((r) => r.ok === false)) process.exitCode = 1;
}

await main();
