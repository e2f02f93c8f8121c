/**
 * The BuildService contract: run a validated BuildRequest in a sandbox and
 * stream what happens. Backends (bwrap, oci with runc or crun, dummy, and a
 * gRPC client) live beside this file and are chosen by URL in from-url.ts.
 * Depends on castore's contracts only; knows nothing of Nix.
 *
 * Behaviour every backend guarantees (checked by one conformance suite):
 * - `build` yields `accepted` first and exactly one terminal event last:
 *   `finished` (all outputs ingested into the castore, in request order) or
 *   `failed` (with a reason, and the exit code or signal when the build ran).
 *   A failing build is an event, not an exception: the iterator throws only
 *   for an invalid request (`INVALID_REQUEST`), unmet constraints
 *   (`CONSTRAINTS_UNMET`), missing inputs (`INPUT_MISSING`), a backend that
 *   cannot run here (`SANDBOX_UNAVAILABLE`), or an abort.
 * - Every byte the build writes to stdout and stderr is delivered in `log`
 *   events, in order, with running offsets per stream.
 * - Aborting the signal, or breaking out of the loop, kills the whole process
 *   tree within a second and removes every trace (processes, mounts,
 *   bundles, temp dirs) before the iterator settles; an abort rejects with
 *   `signal.reason`, unwrapped.
 * - The build's environment is exactly the request's, plus `PWD` and
 *   `HOME` = `/<working_dir>` when the request does not set them
 *   (sandbox/sandbox-environment.ts); bubblewrap always sets PWD to the
 *   working directory, so bwrap refuses a request with another PWD.
 * - Builds may be started concurrently; each backend runs at most its
 *   configured number at once and queues the rest.
 */
import type { AbortOptions } from '../common/abort.js';
import type { BuildEvent } from './build-events.js';
import type { BuildRequest } from './build-request.js';

export interface BuildService {
  /** A short name for events and logs, e.g. `bwrap` or `oci(runc)`. */
  readonly name: string;
  /** Streams the build's events; see the contract above. */
  build(request: BuildRequest, options?: AbortOptions): AsyncIterable<BuildEvent>;
  /** Waits for nothing new to start; releases resources. */
  close(): Promise<void>;
}

/** Limits a local sandbox backend enforces; every field has a documented default. */
export interface SandboxLimits {
  /** Builds run at once; more wait in order. Default: the number of CPU cores. */
  concurrency?: number;
  /** Wall-clock limit per build in ms; default none. */
  timeoutMs?: number;
  /** Kill a build that writes nothing for this long (ms); default none. */
  silenceTimeoutMs?: number;
  /** Memory limit per build in bytes (cgroup); default none. */
  memoryLimitBytes?: number;
  /** Process limit per build (cgroup pids); default `DEFAULT_PIDS_LIMIT`. */
  pidsLimit?: number;
}

export const DEFAULT_PIDS_LIMIT = 1024;
