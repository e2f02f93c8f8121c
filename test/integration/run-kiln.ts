/** Runs `bin/kiln` as a user would, for the CLI contract tests. */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

export const repo = resolve(import.meta.dirname, '../..');
export const kiln = join(repo, 'bin/kiln');

export interface KilnRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runKiln(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KilnRun> {
  return new Promise((done, fail) => {
    const child = spawn(kiln, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}
