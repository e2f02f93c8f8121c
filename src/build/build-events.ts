/**
 * The events a build streams, in order: `accepted`, `started`, then any
 * number of `log` and `resources` events and one `output-ingested` per
 * output, and finally exactly one of `finished` or `failed`. Log events
 * carry every byte the build wrote, in order, never clipped; `offset` is the
 * number of bytes of that stream delivered before this chunk.
 */
import type { Node } from '../castore/index.js';
import type { BuildResponse } from './proto-convert.js';

/** Why a build failed. */
export type BuildFailureReason =
  /** The command exited with a non-zero status. */
  | 'exit-code'
  /** The command was killed by a signal it did not get from Kiln. */
  | 'signal'
  /** A requested output does not exist after the build. */
  | 'output-missing'
  /** An output exists but cannot be ingested (a device node, a fifo, …). */
  | 'output-invalid'
  /** The wall-clock limit passed. */
  | 'timeout'
  /** The build wrote nothing for longer than the silence limit. */
  | 'silence-timeout'
  /** The build went over its memory limit and was killed. */
  | 'out-of-memory'
  /** The caller cancelled it. */
  | 'cancelled'
  /** The sandbox could not be set up or torn down. */
  | 'sandbox-error';

export type BuildEvent =
  | {
      readonly type: 'accepted';
      /** The request digest (`blake3-…`): the build's identity. */
      readonly buildId: string;
      /** Unique per run of the build. */
      readonly invocationId: string;
      /** The backend that took it, e.g. `bwrap` or `oci(runc)`. */
      readonly backend: string;
    }
  | { readonly type: 'started' }
  | { readonly type: 'log'; readonly stream: 'stdout' | 'stderr'; readonly offset: number; readonly data: Uint8Array }
  | { readonly type: 'resources'; readonly cpuTimeMs: number; readonly peakMemoryBytes: number }
  | {
      readonly type: 'output-ingested';
      readonly index: number;
      readonly path: string;
      readonly node: Node;
      readonly needles: readonly number[];
    }
  | {
      readonly type: 'finished';
      readonly response: BuildResponse;
      readonly exitCode: number;
      readonly wallTimeMs: number;
      readonly cpuTimeMs: number;
      readonly peakMemoryBytes: number;
      /** The DSSE envelope (JSON) of the provenance the builder signed for this build, if it signed one. */
      readonly provenance?: string;
    }
  | {
      readonly type: 'failed';
      readonly reason: BuildFailureReason;
      readonly message: string;
      readonly exitCode?: number;
      readonly signal?: string;
      /** The last lines of the combined log, for a one-glance diagnosis. */
      readonly logTail: string;
    };

export type BuildEventType = BuildEvent['type'];
