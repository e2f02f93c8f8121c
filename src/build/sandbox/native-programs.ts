/**
 * Kiln's two small C programs, compiled from their sources in this package
 * into `dist/native/` by `scripts/build.sh`, or on first use when a compiled
 * copy is missing or older than its source (this needs `cc`):
 * - `kiln-launcher` starts sandbox processes (see launcher.ts);
 * - `kiln-sandbox-init` runs first inside a sandbox and reports how the
 *   build's command ended (see sandbox-init.ts). It is linked statically
 *   and without libc, since a sandbox has no loader or libraries.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildError } from '../errors.js';
import { findExecutable } from './find-executable.js';

/** The package root: this module is src/build/sandbox/native-programs.ts or dist/build/sandbox/native-programs.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface NativeProgram {
  readonly name: string;
  readonly source: string;
  readonly binary: string;
  readonly compilerFlags: readonly string[];
}

function program(name: string, compilerFlags: readonly string[]): NativeProgram {
  return { name, source: join(ROOT, `src/build/sandbox/${name}.c`), binary: join(ROOT, `dist/native/${name}`), compilerFlags };
}

export const KILN_LAUNCHER = program('kiln-launcher', ['-O2', '-Wall']);

export const KILN_SANDBOX_INIT = program('kiln-sandbox-init', [
  '-Os',
  '-Wall',
  '-static',
  '-nostdlib',
  '-fno-pie',
  '-no-pie',
  '-ffreestanding',
  '-fno-builtin',
  '-fno-stack-protector',
  '-fno-tree-loop-distribute-patterns', // no memcpy/memset calls: there is no libc to call
  '-fno-asynchronous-unwind-tables',
  '-Wl,--build-id=none',
  '-s',
]);

/** The compiled program, compiled now when it is missing or older than its source. */
export function nativeProgram(program: NativeProgram): string {
  const built = statSync(program.binary, { throwIfNoEntry: false });
  const source = statSync(program.source, { throwIfNoEntry: false });
  if (built && (!source || built.mtimeMs >= source.mtimeMs)) return program.binary;
  if (!source)
    throw new BuildError(
      'SANDBOX_UNAVAILABLE',
      `${program.name} is neither built (${program.binary}) nor at hand to build (${program.source})`,
    );
  compileNativeProgram(program);
  return program.binary;
}

/** Compiles one program with the system's C compiler (atomically: concurrent compiles each rename a whole file). */
export function compileNativeProgram(program: NativeProgram): void {
  const cc = findExecutable('cc') ?? findExecutable('gcc');
  if (!cc) throw new BuildError('SANDBOX_UNAVAILABLE', `building ${program.name} needs a C compiler (\`cc\`; Debian: apt-get install gcc)`);
  mkdirSync(dirname(program.binary), { recursive: true });
  const temporary = `${program.binary}.${process.pid}.tmp`;
  try {
    execFileSync(cc, [...program.compilerFlags, '-o', temporary, program.source], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(temporary, program.binary);
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new BuildError('SANDBOX_UNAVAILABLE', `cannot compile ${program.name}: ${stderr || (error as Error).message}`);
  } finally {
    if (existsSync(temporary)) rmSync(temporary, { force: true });
  }
}

/** Compiles both programs (scripts/build.sh). */
export function compileNativePrograms(): void {
  for (const each of [KILN_LAUNCHER, KILN_SANDBOX_INIT]) compileNativeProgram(each);
}
