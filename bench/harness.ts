/**
 * Shared benchmark helpers: timing commands, medians, peak RSS through
 * /usr/bin/time, and printing result tables. Benchmarks report ratios
 * against reference tools measured in the same run, never absolute limits.
 */
import { spawn } from 'node:child_process';
import { Launcher } from '../src/build/sandbox/launcher.js';

export interface Timed {
  seconds: number;
  /** Peak resident set size of the child in bytes, when measured. */
  maxRssBytes?: number;
  stdout: string;
}

/** Runs a command to completion; with `measureRss`, wraps it in /usr/bin/time. */
export async function timeCommand(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; measureRss?: boolean; cwd?: string } = {},
): Promise<Timed> {
  const command = options.measureRss ? ['/usr/bin/time', '-f', 'KILN_MAXRSS_KB=%M', ...argv] : argv;
  const started = performance.now();
  const { status, stdout, stderr } = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command[0] as string, command.slice(1), {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ status: code, stdout: out, stderr: err }));
  });
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0) throw new Error(`${argv.join(' ')} exited with ${status}: ${stderr.slice(-2000)}`);
  const rss = /KILN_MAXRSS_KB=(\d+)/.exec(stderr);
  return { seconds, stdout, ...(rss ? { maxRssBytes: Number(rss[1]) * 1024 } : {}) };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Runs `fn` `times` times and returns the median seconds. */
export async function medianSeconds(times: number, fn: () => Promise<number>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) samples.push(await fn());
  return median(samples);
}

export interface Row {
  metric: string;
  kiln: string;
  reference: string;
  ratio: string;
  target: string;
  /** Whether the target is met; undefined when there is nothing to judge (informational, or the reference failed). */
  ok?: boolean;
}

export function printTable(title: string, rows: Row[]): void {
  const header = ['metric', 'kiln', 'reference', 'ratio', 'target', ''];
  const lines = rows.map((r) => [
    r.metric,
    r.kiln,
    r.reference,
    r.ratio,
    r.target,
    r.ok === undefined ? '-' : r.ok ? 'target met' : 'MISSED',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  console.log(`\n## ${title}\n`);
  console.log(fmt(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
}

export const mb = (bytes: number, seconds: number) => `${(bytes / 1e6 / seconds).toFixed(0)} MB/s`;

/**
 * Runs argv to completion (stdout and stderr piped and drained, as Kiln does); returns the wall time in ms.
 * It starts the way Kiln starts a sandbox, through kiln-launcher: a fork of the bench's own Node
 * process would add milliseconds that the runtime does not cost.
 */
export async function runBare(argv: readonly string[], options: { uid?: number; gid?: number } = {}): Promise<number> {
  const started = performance.now();
  let output = '';
  const launched = await Launcher.shared().launch({ argv, ...options, onOutput: (_stream, data) => (output += data) });
  const { code, signal } = await launched.exited;
  const elapsed = performance.now() - started;
  if (code === 0) return elapsed;
  throw new Error(`${argv.join(' ')} failed (${signal ?? `exit ${code}`}): ${output.slice(-2000).trim()}`);
}
