/**
 * Helpers for the `kiln build` CLI tests: request files, a KILN_HOME per
 * test, sandbox directories build users can traverse, and what a build may
 * have left behind on the host (build dirs, processes, OCI containers).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kiln } from './run-kiln.js';

export const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A fresh directory removed by `cleanup`; KILN_HOME and request files go here. */
export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(join(tmpdir(), prefix));
}

/**
 * A sandbox directory under /var/tmp (build users cannot traverse /root or
 * a 0700 dir under /tmp), unique to this test process and `label`.
 */
export function sandboxDir(label: string): string {
  return join('/var/tmp', `kiln-cli-${label}-${process.pid}`);
}

/** The proto3 JSON of a BuildRequest running `script` under /bin/sh with `$out` = nix/store/result. */
export function shellRequest(script: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    commandArgs: ['/bin/sh', '-c', script],
    workingDir: 'build',
    scratchPaths: ['build', 'nix/store'],
    inputsDir: 'nix/store',
    outputs: ['nix/store/result'],
    environmentVars: [{ key: 'out', value: b64('/nix/store/result') }],
    constraints: { system: 'x86_64-linux', provideBinSh: true },
    ...extra,
  };
}

let counter = 0;
export async function writeRequest(dir: string, request: unknown): Promise<string> {
  const path = join(dir, `request-${counter++}.json`);
  await fs.writeFile(path, typeof request === 'string' ? request : JSON.stringify(request));
  return path;
}

/** Build directories (`build-*`) present in a sandbox directory. */
export async function buildDirsIn(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  return entries.filter((e) => e.startsWith('build-'));
}

/** Processes whose command line contains `marker`. */
export function processesMatching(marker: string): string[] {
  const result = spawnSync('pgrep', ['-af', marker], { encoding: 'utf8' });
  return result.stdout
    .split('\n')
    .filter((line) => line !== '' && !line.includes('pgrep'))
    .map((line) => line.trim());
}

/** Containers `runtime list` shows whose bundle lies under `dir`. */
export function containersUnder(runtime: 'runc' | 'crun', dir: string): string[] {
  const list = spawnSync(runtime, ['list', '-f', 'json'], { encoding: 'utf8' });
  const entries = (JSON.parse(list.stdout.trim() || 'null') ?? []) as { id: string; bundle?: string }[];
  return entries.filter((c) => c.bundle?.startsWith(`${dir}/`)).map((c) => c.id);
}

/** Why the OCI runtime cannot be used here, or undefined. */
export function runtimeSkipReason(runtime: 'runc' | 'crun'): string | undefined {
  if (spawnSync(runtime, ['--version']).status !== 0) return `${runtime} is not installed`;
  if (process.getuid?.() !== 0) return 'oci builds need root';
  return undefined;
}

export interface Interrupted {
  status: number | null;
  stderr: string;
  /** From SIGINT to the process's exit. */
  exitMs: number;
  /** What was left behind while the build was running, for comparison. */
  whileRunning: { processes: string[]; containers: string[] };
}

/**
 * Runs `bin/kiln ARGS`, waits until stderr shows `startedLine` (the build's
 * first log line), checks what is running, sends SIGINT, and measures how
 * long the CLI takes to exit.
 */
export function interruptKiln(
  args: string[],
  env: NodeJS.ProcessEnv,
  startedLine: string,
  probe: () => { processes: string[]; containers: string[] },
): Promise<Interrupted> {
  return new Promise((done, fail) => {
    const child = spawn(kiln, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sentAt: number | undefined;
    let whileRunning = { processes: [] as string[], containers: [] as string[] };
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`the build never printed ${startedLine}; stderr: ${stderr}`));
    }, 60_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      if (sentAt === undefined && stderr.includes(`${startedLine}\n`)) {
        whileRunning = probe();
        sentAt = performance.now();
        child.kill('SIGINT');
      }
    });
    child.on('error', fail);
    child.on('close', (status) => {
      clearTimeout(guard);
      done({ status, stderr, exitMs: sentAt === undefined ? Number.NaN : performance.now() - sentAt, whileRunning });
    });
  });
}
