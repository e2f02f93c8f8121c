/**
 * How `kiln build` shows a running build on stderr: a first line naming
 * the build (its request digest) and the backend, every log byte as it
 * arrives, and on a terminal a status line (short build id, backend,
 * elapsed time, bytes of log, last resource sample) redrawn in place. The
 * status line is cleared before log output is written and drawn only while
 * the log stands at the start of a line, so it never hides or splits a line.
 */
import { type ProgressLine, progressLine } from './progress.js';

type Stderr = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** How often the status line's clock is redrawn (ms). */
const REDRAW_MS = 250;

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatSeconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** `blake3-` and the first 10 characters of the digest. */
export function shortBuildId(buildId: string): string {
  return buildId.slice(0, 'blake3-'.length + 10);
}

export class BuildStatus {
  readonly #stderr: Stderr;
  readonly #line: ProgressLine;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #since = performance.now();
  #buildId = '';
  #backend = '';
  #phase = 'preparing';
  #logBytes = 0;
  #atLineStart = true;
  #resources = '';

  constructor(stderr: Stderr) {
    this.#stderr = stderr;
    this.#line = progressLine(stderr, REDRAW_MS / 2);
    if (stderr.isTTY) {
      this.#timer = setInterval(() => this.#draw(true), REDRAW_MS);
      this.#timer.unref();
    }
  }

  accepted(buildId: string, backend: string): void {
    this.#buildId = buildId;
    this.#backend = backend;
    this.note(`kiln: build ${buildId} on ${backend}`);
  }

  started(): void {
    this.#phase = 'running';
    this.#draw(true);
  }

  log(data: Uint8Array): void {
    if (data.byteLength === 0) return;
    this.#line.clear();
    this.#stderr.write(data);
    this.#logBytes += data.byteLength;
    this.#atLineStart = data[data.byteLength - 1] === 0x0a;
    this.#draw(false);
  }

  resources(cpuTimeMs: number, peakMemoryBytes: number): void {
    this.#resources = `cpu ${formatSeconds(cpuTimeMs)}, peak ${formatBytes(peakMemoryBytes)}`;
  }

  ingesting(): void {
    this.#phase = 'storing outputs';
  }

  /** Writes a line of Kiln's own on a fresh line, below the log. */
  note(line: string): void {
    this.#line.clear();
    if (!this.#atLineStart) this.#stderr.write('\n');
    this.#atLineStart = true;
    this.#stderr.write(`${line}\n`);
    this.#draw(true);
  }

  /** Removes the status line for good; the log stays as written. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#line.done();
    if (!this.#atLineStart) this.#stderr.write('\n');
    this.#atLineStart = true;
  }

  #draw(force: boolean): void {
    if (!this.#atLineStart || this.#buildId === '') return;
    const parts = [
      `${shortBuildId(this.#buildId)}…`,
      this.#backend,
      this.#phase,
      formatSeconds(performance.now() - this.#since),
      `${formatBytes(this.#logBytes)} of log`,
      ...(this.#resources ? [this.#resources] : []),
    ];
    this.#line.update(parts.join(' · '), force);
  }
}
