import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { BuildEventSchema } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent } from '../build-events.js';
import { buildEventFromMessage } from './event-convert.js';
import { EventJournal, RECENT_BYTES } from './event-journal.js';

const log = (text: string, offset = 0): BuildEvent => ({ type: 'log', stream: 'stdout', offset, data: new TextEncoder().encode(text) });
const accepted: BuildEvent = { type: 'accepted', buildId: 'blake3-x', invocationId: 'i', backend: 'test' };
const failed: BuildEvent = { type: 'failed', reason: 'exit-code', message: 'no', exitCode: 1, logTail: '' };

async function readAll(journal: EventJournal, from = 0): Promise<{ sequence: number; event: BuildEvent }[]> {
  const out: { sequence: number; event: BuildEvent }[] = [];
  for await (const bytes of journal.read(from)) {
    const message = fromBinary(BuildEventSchema, bytes);
    out.push({ sequence: Number(message.sequence), event: buildEventFromMessage(message) });
  }
  return out;
}

const openFds = async () => (await fs.readdir('/proc/self/fd')).length;

describe('EventJournal', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'kiln-journal-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('gives a live reader each event as it is appended, numbered in order, and ends after the terminal event', async () => {
    const journal = EventJournal.create(join(dir, 'live.events'));
    const reading = readAll(journal);
    await journal.append(accepted);
    await journal.append(log('a\n'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    await journal.append(log('b\n', 2));
    await journal.append(failed);
    await journal.append(log('after the end'));
    const events = await reading;
    assert.deepEqual(
      events.map((e) => e.sequence),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      events.map((e) => e.event.type),
      ['accepted', 'log', 'log', 'failed'],
    );
    assert.equal(journal.complete, true);
    await journal.close();
    await assert.rejects(fs.access(journal.path), 'closing deletes the file');
  });

  it('replays from any sequence for a late reader, from the file, past what memory keeps, holding no descriptor once complete', async () => {
    const fdsBefore = await openFds();
    const journal = EventJournal.create(join(dir, 'late.events'));
    const chunk = 'x'.repeat(100_000);
    const count = Math.ceil((3 * RECENT_BYTES) / chunk.length);
    await journal.append(accepted);
    for (let i = 0; i < count; i++) await journal.append(log(`${i}:${chunk}`, i));
    await journal.append(failed);
    await journal.written();
    assert.equal(await openFds(), fdsBefore, 'no descriptor held once the terminal event is written');
    const all = await readAll(journal);
    assert.equal(all.length, count + 2);
    assert.deepEqual(
      all.map((e) => e.sequence),
      Array.from({ length: count + 2 }, (_, i) => i),
    );
    const entry = all[5]?.event;
    assert.ok(entry?.type === 'log' && Buffer.from(entry.data).toString().startsWith('4:'));
    const tail = await readAll(journal, count);
    assert.deepEqual(
      tail.map((e) => e.sequence),
      [count, count + 1],
    );
    assert.equal(await openFds(), fdsBefore, 'readers close their descriptors');
    await journal.close();
  });

  it('a reader that falls behind a running build reads the evicted events from the file', async () => {
    const journal = EventJournal.create(join(dir, 'behind.events'));
    await journal.append(accepted);
    const reader = journal.read(0)[Symbol.asyncIterator]();
    assert.equal(Number(fromBinary(BuildEventSchema, (await reader.next()).value as Uint8Array).sequence), 0);
    const chunk = 'y'.repeat(200_000);
    const count = Math.ceil((2 * RECENT_BYTES) / chunk.length);
    for (let i = 0; i < count; i++) await journal.append(log(chunk, i * chunk.length));
    const sequences: number[] = [];
    const done = (async () => {
      for (let next = await reader.next(); !next.done; next = await reader.next())
        sequences.push(Number(fromBinary(BuildEventSchema, next.value).sequence));
    })();
    await journal.append(failed);
    await done;
    assert.deepEqual(
      sequences,
      Array.from({ length: count + 1 }, (_, i) => i + 1),
    );
    await journal.close();
  });

  it('when the file cannot be written, tells the writer and still gives watchers every event from memory', async () => {
    const journal = EventJournal.create(join(dir, 'no-such-dir', 'failing.events'));
    const reading = readAll(journal);
    await journal.append(accepted);
    await assert.rejects(journal.written(), /ENOENT/);
    await assert.rejects(journal.append(failed), /ENOENT/);
    assert.deepEqual(
      (await reading).map((e) => e.event.type),
      ['accepted', 'failed'],
    );
    await journal.close();
  });

  it('ends its readers when closed', async () => {
    const journal = EventJournal.create(join(dir, 'closed.events'));
    await journal.append(accepted);
    const reading = readAll(journal);
    await new Promise((resolve) => setTimeout(resolve, 10));
    await journal.close();
    assert.deepEqual(
      (await reading).map((e) => e.sequence),
      [0],
    );
  });
});
