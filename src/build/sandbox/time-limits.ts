/** Wall-clock and silence limits of one build: `onExpire` runs once, when the first of them passes. */
import type { SandboxLimits } from '../build-service.js';

export class TimeLimits {
  expired: 'timeout' | 'silence-timeout' | undefined;
  readonly #silenceMs: number | undefined;
  readonly #onExpire: () => void;
  readonly #wall: NodeJS.Timeout | undefined;
  #silence: NodeJS.Timeout | undefined;

  constructor(limits: Pick<SandboxLimits, 'timeoutMs' | 'silenceTimeoutMs'>, onExpire: () => void) {
    this.#onExpire = onExpire;
    this.#silenceMs = limits.silenceTimeoutMs;
    if (limits.timeoutMs !== undefined) this.#wall = setTimeout(() => this.#expire('timeout'), limits.timeoutMs);
    this.activity();
  }

  /** The build wrote something: the silence clock starts again. */
  activity(): void {
    if (this.#silenceMs === undefined || this.expired) return;
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => this.#expire('silence-timeout'), this.#silenceMs);
  }

  #expire(kind: 'timeout' | 'silence-timeout'): void {
    if (this.expired) return;
    this.expired = kind;
    this.stop();
    this.#onExpire();
  }

  stop(): void {
    clearTimeout(this.#wall);
    clearTimeout(this.#silence);
  }
}
