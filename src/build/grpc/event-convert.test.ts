import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { BuildEventSchema } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent } from '../build-events.js';
import { buildEventFromMessage, buildEventToMessage } from './event-convert.js';

const roundTrip = (event: BuildEvent): BuildEvent =>
  buildEventFromMessage(fromBinary(BuildEventSchema, toBinary(BuildEventSchema, buildEventToMessage(event, 1))));

describe('build event conversion', () => {
  const finished = {
    type: 'finished',
    response: { outputs: [] },
    exitCode: 0,
    wallTimeMs: 12,
    cpuTimeMs: 3,
    peakMemoryBytes: 4096,
  } as const;

  it('carries the provenance envelope of a finished build, and leaves it out when the builder signed nothing', () => {
    const envelope = '{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}';
    assert.deepEqual(roundTrip({ ...finished, provenance: envelope }), { ...finished, provenance: envelope });
    const unsigned = roundTrip(finished);
    assert.deepEqual(unsigned, finished);
    assert.equal('provenance' in unsigned, false);
  });
});
