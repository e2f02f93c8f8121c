/**
 * Helpers for the remote-build tests: `bin/kiln serve` as a child process
 * (started, waited for, signalled, its memory and file descriptors read
 * from /proc), `bin/kiln build` runs that can be watched while they run, and
 * throwaway certificates made with openssl.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { selfSignedCertificate } from '../../src/castore/testing/index.js';
import { kiln } from './run-kiln.js';

export interface ServerProcess {
  readonly child: ChildProcess;
  /** What the server printed as its bound address: `unix:///…` or `HOST:PORT`. */
  readonly address: string;
  /** Everything the server wrote on stderr so far. */
  stderr(): string;
  /** Sends `signal` and resolves with the exit status (null when killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit status once the process has exited. */
  readonly exited: Promise<number | null>;
}

/** Starts `bin/kiln serve ARGS` and waits for its `listening on` line; rejects with its stderr if it exits first. */
export function startServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const child = spawn(kiln, ['serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kiln serve did not start within 30 s; stderr: ${stderr}`));
    }, 30_000);
    child.stdout?.on('data', (d) => {
      stdout += d;
      const match = /^listening on (\S+)\n/m.exec(stdout);
      if (!match) return;
      clearTimeout(guard);
      resolve({
        child,
        address: match[1] as string,
        stderr: () => stderr,
        exited,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
    void exited.then((code) => {
      clearTimeout(guard);
      reject(new Error(`kiln serve exited with ${code} before listening; stderr: ${stderr}`));
    });
  });
}

export interface WatchedRun {
  readonly child: ChildProcess;
  /** Everything written on stderr so far. */
  stderr(): string;
  /** Resolves once stderr contains `text`; rejects after `timeoutMs`. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  /** Exit status, stdout and stderr once the process has exited. */
  readonly done: Promise<{ status: number | null; stdout: string; stderr: string }>;
}

/** Runs `bin/kiln ARGS` and lets the caller act while it runs. */
export function watchKiln(args: string[], env: NodeJS.ProcessEnv = {}): WatchedRun {
  const child = spawn(kiln, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: (() => void)[] = [];
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => {
    stderr += d;
    for (const check of [...waiters]) check();
  });
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (status) => resolve({ status, stdout, stderr })),
  );
  return {
    child,
    stderr: () => stderr,
    done,
    waitFor(text, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`never saw ${JSON.stringify(text)}; stderr: ${stderr}`));
        }, timeoutMs);
        const check = () => {
          if (!stderr.includes(text)) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
        };
        waiters.push(check);
        check();
        void done.then(() => {
          if (waiters.includes(check)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            reject(new Error(`exited before printing ${JSON.stringify(text)}; stderr: ${stderr}`));
          }
        });
      });
    },
  };
}

/** Resident set size of a process in bytes (VmRSS). */
export async function rssOf(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** Open file descriptors of a process. */
export async function fdCount(pid: number): Promise<number> {
  return (await fs.readdir(`/proc/${pid}/fd`)).length;
}

export { opensslSkipReason } from '../../src/castore/testing/index.js';

/** A self-signed certificate for localhost and 127.0.0.1 (a CA of its own too): the paths of its PEM files. */
export async function selfSignedCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const { certPath, keyPath } = await selfSignedCertificate(dir, name);
  return { cert: certPath, key: keyPath };
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the last result. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000, everyMs = 100): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
