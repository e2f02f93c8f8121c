/**
 * BuildEvent ⇄ `kiln.build.v1.BuildEvent` messages. Decoding validates what
 * a remote peer sent (entries, reasons, offsets) and throws
 * `BUILDER_FAILED` naming the problem.
 */
import { create } from '@bufbuild/protobuf';
import { entryFromMessage, entryToMessage, type Node } from '../../castore/index.js';
import {
  type BuildEvent as BuildEventMessage,
  BuildEventSchema,
  FailureReason,
  LogStream,
} from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent, BuildFailureReason } from '../build-events.js';
import { BuildError } from '../errors.js';
import { buildResponseFromMessage, buildResponseToMessage } from '../proto-convert.js';

const REASONS: Record<BuildFailureReason, FailureReason> = {
  'exit-code': FailureReason.EXIT_CODE,
  signal: FailureReason.SIGNAL,
  'output-missing': FailureReason.OUTPUT_MISSING,
  'output-invalid': FailureReason.OUTPUT_INVALID,
  timeout: FailureReason.TIMEOUT,
  'silence-timeout': FailureReason.SILENCE_TIMEOUT,
  'out-of-memory': FailureReason.OUT_OF_MEMORY,
  cancelled: FailureReason.CANCELLED,
  'sandbox-error': FailureReason.SANDBOX_ERROR,
};
const REASON_NAMES = new Map(Object.entries(REASONS).map(([name, value]) => [value, name as BuildFailureReason]));

export function buildEventToMessage(event: BuildEvent, sequence: number, timeUnixMs = Date.now()): BuildEventMessage {
  const base = { sequence: BigInt(sequence), timeUnixMs: BigInt(timeUnixMs) };
  switch (event.type) {
    case 'accepted':
      return create(BuildEventSchema, {
        ...base,
        event: { case: 'accepted', value: { buildId: event.buildId, invocationId: event.invocationId, backend: event.backend } },
      });
    case 'started':
      return create(BuildEventSchema, { ...base, event: { case: 'started', value: {} } });
    case 'log':
      return create(BuildEventSchema, {
        ...base,
        event: {
          case: 'log',
          value: {
            stream: event.stream === 'stdout' ? LogStream.STDOUT : LogStream.STDERR,
            offset: BigInt(event.offset),
            data: event.data,
          },
        },
      });
    case 'resources':
      return create(BuildEventSchema, {
        ...base,
        event: { case: 'resources', value: { cpuTimeMs: BigInt(event.cpuTimeMs), peakMemoryBytes: BigInt(event.peakMemoryBytes) } },
      });
    case 'output-ingested':
      return create(BuildEventSchema, {
        ...base,
        event: {
          case: 'outputIngested',
          value: {
            index: event.index,
            path: event.path,
            entry: entryToMessage(new Uint8Array(0), event.node),
            needles: event.needles.map((n) => BigInt(n)),
          },
        },
      });
    case 'finished':
      return create(BuildEventSchema, {
        ...base,
        event: {
          case: 'finished',
          value: {
            response: buildResponseToMessage(event.response),
            exitCode: event.exitCode,
            wallTimeMs: BigInt(Math.round(event.wallTimeMs)),
            cpuTimeMs: BigInt(Math.round(event.cpuTimeMs)),
            peakMemoryBytes: BigInt(event.peakMemoryBytes),
            provenance: event.provenance ?? '',
          },
        },
      });
    case 'failed':
      return create(BuildEventSchema, {
        ...base,
        event: {
          case: 'failed',
          value: {
            reason: REASONS[event.reason],
            message: event.message,
            ...(event.exitCode !== undefined ? { exitCode: event.exitCode } : {}),
            signal: event.signal ?? '',
            logTail: event.logTail,
          },
        },
      });
  }
}

function invalid(what: string): BuildError {
  return new BuildError('BUILDER_FAILED', `invalid build event from the builder: ${what}`);
}

export function buildEventFromMessage(message: BuildEventMessage): BuildEvent {
  const { event } = message;
  switch (event.case) {
    case 'accepted':
      return { type: 'accepted', buildId: event.value.buildId, invocationId: event.value.invocationId, backend: event.value.backend };
    case 'started':
      return { type: 'started' };
    case 'log': {
      const stream = event.value.stream === LogStream.STDOUT ? 'stdout' : event.value.stream === LogStream.STDERR ? 'stderr' : undefined;
      if (!stream) throw invalid(`log chunk with stream ${event.value.stream}`);
      return { type: 'log', stream, offset: Number(event.value.offset), data: event.value.data };
    }
    case 'resources':
      return { type: 'resources', cpuTimeMs: Number(event.value.cpuTimeMs), peakMemoryBytes: Number(event.value.peakMemoryBytes) };
    case 'outputIngested': {
      if (!event.value.entry) throw invalid(`output ${event.value.index} has no entry`);
      let node: Node;
      try {
        node = entryFromMessage(event.value.entry, { anonymous: true }).node;
      } catch (error) {
        throw invalid(`output ${event.value.index}: ${(error as Error).message}`);
      }
      return { type: 'output-ingested', index: event.value.index, path: event.value.path, node, needles: event.value.needles.map(Number) };
    }
    case 'finished': {
      if (!event.value.response) throw invalid('finished without a response');
      return {
        type: 'finished',
        response: buildResponseFromMessage(event.value.response),
        exitCode: event.value.exitCode,
        wallTimeMs: Number(event.value.wallTimeMs),
        cpuTimeMs: Number(event.value.cpuTimeMs),
        peakMemoryBytes: Number(event.value.peakMemoryBytes),
        ...(event.value.provenance !== '' ? { provenance: event.value.provenance } : {}),
      };
    }
    case 'failed': {
      const reason = REASON_NAMES.get(event.value.reason);
      if (!reason) throw invalid(`failure reason ${event.value.reason}`);
      return {
        type: 'failed',
        reason,
        message: event.value.message,
        ...(event.value.exitCode !== undefined ? { exitCode: event.value.exitCode } : {}),
        ...(event.value.signal ? { signal: event.value.signal } : {}),
        logTail: event.value.logTail,
      };
    }
    default:
      throw invalid('an event of unknown kind');
  }
}

/** Is this the last event of a build? */
export function isTerminal(event: BuildEvent): boolean {
  return event.type === 'finished' || event.type === 'failed';
}
