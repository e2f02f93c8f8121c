/**
 * Streaming NAR reader (see nar.ts): validates as it goes, hashes every
 * byte it pulls from the source, and never holds more than one source
 * chunk plus one token.
 */
import type { AbortOptions } from '../common/abort.js';
import { type ByteSource, toChunks } from '../common/async-iterable.js';
import { compareBytes, displayBytes } from '../common/encoding.js';
import { NixFormatError } from './errors.js';
import { createNixHasher, type NixHash, type NixHasher } from './hash.js';
import {
  displayNarPath,
  MAX_NAR_NAME_LENGTH,
  MAX_NAR_SYMLINK_TARGET_LENGTH,
  NAR_MAGIC,
  type NarDigest,
  type NarEvent,
  type NarPath,
  narNameProblem,
  narSymlinkTargetProblem,
} from './nar.js';

const EMPTY = new Uint8Array(0);
const MAX_TAG_LENGTH = 16;

/** Pulls bytes from the source; hashes and counts every chunk as it arrives. */
class ByteInput {
  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  /** Offset of `chunk[pos]` in the archive. */
  offset = 0;
  private done = false;
  private readonly iterator: AsyncIterator<Uint8Array>;

  constructor(
    source: ByteSource,
    private readonly hasher: NixHasher,
    private readonly signal?: AbortSignal,
  ) {
    this.iterator = toChunks(source)[Symbol.asyncIterator]();
  }

  /** Loads the next non-empty chunk; false at the end of the source. */
  private async fill(): Promise<boolean> {
    while (!this.done) {
      this.signal?.throwIfAborted();
      const next = await this.iterator.next();
      if (next.done) {
        this.done = true;
        break;
      }
      if (next.value.length === 0) continue;
      this.hasher.update(next.value);
      this.chunk = next.value;
      this.pos = 0;
      return true;
    }
    return false;
  }

  fail(reason: string, offset: number = this.offset): never {
    throw new NixFormatError('INVALID_NAR', `invalid NAR: ${reason} at byte ${offset}`, { details: { offset } });
  }

  /**
   * The next token (length, bytes, padding) when it lies whole in the
   * current chunk, is at most `max` bytes and has zero padding; otherwise
   * undefined and nothing is consumed (the slow path then reports errors).
   */
  tryToken(max: number): Uint8Array | undefined {
    const end = this.tokenEnd(max);
    if (end < 0) return undefined;
    const start = this.pos + 8;
    const length = this.chunk[this.pos] + this.chunk[this.pos + 1] * 256;
    this.offset += end - this.pos;
    this.pos = end;
    return this.chunk.subarray(start, start + length);
  }

  /** Consumes the next token when it lies whole in the current chunk and equals `text`. */
  tryTag(text: string): boolean {
    const end = this.tokenEnd(text.length);
    if (end < 0) return false;
    const c = this.chunk;
    const start = this.pos + 8;
    if (c[this.pos] !== text.length) return false;
    for (let i = 0; i < text.length; i++) if (c[start + i] !== text.charCodeAt(i)) return false;
    this.offset += end - this.pos;
    this.pos = end;
    return true;
  }

  /** Where a small (≤ max < 65536) well-padded token starting here ends in the current chunk, or -1. */
  private tokenEnd(max: number): number {
    const c = this.chunk;
    const p = this.pos;
    if (c.length - p < 8 || c[p + 2] | c[p + 3] | c[p + 4] | c[p + 5] | c[p + 6] | c[p + 7]) return -1;
    const length = c[p] + c[p + 1] * 256;
    if (length > max) return -1;
    const end = p + 8 + length;
    const padded = end + ((8 - (length % 8)) % 8);
    if (padded > c.length) return -1;
    for (let i = end; i < padded; i++) if (c[i] !== 0) return -1;
    return padded;
  }

  /** Exactly `n` bytes (a copy when they span chunks). */
  async readExact(n: number): Promise<Uint8Array> {
    const available = this.chunk.length - this.pos;
    if (available >= n) {
      const out = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos === this.chunk.length && !(await this.fill())) this.fail('unexpected end of archive');
      const take = Math.min(n - filled, this.chunk.length - this.pos);
      out.set(this.chunk.subarray(this.pos, this.pos + take), filled);
      this.pos += take;
      this.offset += take;
      filled += take;
    }
    return out;
  }

  /** Up to `max` (> 0) bytes from the current chunk, without copying. */
  async readSome(max: number): Promise<Uint8Array> {
    if (this.pos === this.chunk.length && !(await this.fill())) this.fail('unexpected end of archive');
    const take = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.offset += take;
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.readSome(left)).length;
  }

  async atEnd(): Promise<boolean> {
    return this.pos === this.chunk.length && !(await this.fill());
  }

  async close(): Promise<void> {
    if (!this.done) await this.iterator.return?.();
  }
}

/**
 * Reads and validates a NAR, yielding its nodes depth-first in archive
 * order. Iterate once. After the last event, `digest` holds the NAR's
 * sha256 and size (every byte of the source, since trailing bytes are
 * rejected). Errors are `INVALID_NAR` with the byte `offset`.
 */
export class NarReader implements AsyncIterable<NarEvent> {
  private readonly hasher = createNixHasher('sha256');
  private readonly input: ByteInput;
  private started = false;
  private result: NixHash | undefined;

  constructor(source: ByteSource, options: AbortOptions = {}) {
    this.input = new ByteInput(source, this.hasher, options.signal);
  }

  /** Bytes of the archive consumed so far. */
  get narSize(): number {
    return this.input.offset;
  }

  /** sha256 and size of the whole archive; only once iteration has completed. */
  get digest(): NarDigest {
    if (!this.result) throw new Error('NarReader.digest is only available after the whole archive was read');
    return { narHash: this.result, narSize: this.input.offset };
  }

  [Symbol.asyncIterator](): AsyncIterator<NarEvent> {
    if (this.started) throw new Error('a NarReader can be iterated only once');
    this.started = true;
    return this.events();
  }

  private u64Of(bytes: Uint8Array, offset: number): number {
    const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
    const high = view.getUint32(4, true);
    if (high > 0x1fffff) this.input.fail('length beyond 2^53', offset);
    return high * 0x100000000 + view.getUint32(0, true);
  }

  private async u64(): Promise<number> {
    const offset = this.input.offset;
    return this.u64Of(await this.input.readExact(8), offset);
  }

  private checkPadding(bytes: Uint8Array, offset: number): void {
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) this.input.fail('non-zero padding', offset);
  }

  private async padding(length: number): Promise<void> {
    const pad = (8 - (length % 8)) % 8;
    if (pad === 0) return;
    const offset = this.input.offset;
    this.checkPadding(await this.input.readExact(pad), offset);
  }

  /**
   * A length-prefixed string of at most `max` bytes. Synchronous when the
   * whole token lies in the current chunk (the common case: most NAR tokens
   * are a few bytes), so that parsing small files costs few promise ticks.
   */
  private token(max: number, what: string): Uint8Array | Promise<Uint8Array> {
    return this.input.tryToken(max) ?? this.tokenAsync(max, what);
  }

  private async tokenAsync(max: number, what: string): Promise<Uint8Array> {
    const offset = this.input.offset;
    const length = await this.u64();
    if (length > max) this.input.fail(`${what} of ${length} bytes is longer than ${max}`, offset);
    const bytes = await this.input.readExact(length);
    await this.padding(length);
    return bytes;
  }

  private fromTag(found: Uint8Array, expected: string, offset: number): void {
    if (!isAscii(found, expected))
      this.input.fail(`expected ${JSON.stringify(expected)}, found ${JSON.stringify(displayBytes(found))}`, offset);
  }

  private expect(expected: string): void | Promise<void> {
    if (this.input.tryTag(expected)) return;
    const offset = this.input.offset;
    const found = this.token(Math.max(expected.length, MAX_TAG_LENGTH), 'token');
    if (found instanceof Promise) return found.then((bytes) => this.fromTag(bytes, expected, offset));
    this.fromTag(found, expected, offset);
  }

  private async *events(): AsyncGenerator<NarEvent> {
    const input = this.input;
    const stack: { path: NarPath; last?: Uint8Array }[] = [];
    try {
      await this.expect(NAR_MAGIC);
      let next: NarPath | undefined = [];
      for (;;) {
        let completed = false;
        if (next) {
          const path: NarPath = next;
          next = undefined;
          await this.expect('(');
          await this.expect('type');
          const typeOffset = input.offset;
          const type = await this.token(MAX_TAG_LENGTH, 'token');
          if (isAscii(type, 'regular')) {
            let executable = false;
            let offset = input.offset;
            let tag = await this.token(MAX_TAG_LENGTH, 'token');
            if (isAscii(tag, 'executable')) {
              executable = true;
              await this.expect('');
              offset = input.offset;
              tag = await this.token(MAX_TAG_LENGTH, 'token');
            }
            this.fromTag(tag, 'contents', offset);
            const size = await this.u64();
            let remaining = size;
            let active = true;
            const contents = async function* () {
              if (!active) throw new Error(`contents of ${displayNarPath(path)} read after the NarReader moved on`);
              while (remaining > 0) {
                if (!active) throw new Error(`contents of ${displayNarPath(path)} read after the NarReader moved on`);
                const chunk = await input.readSome(remaining);
                remaining -= chunk.length;
                yield chunk;
              }
            };
            yield { type: 'regular', path, executable, size, contents: contents() };
            active = false;
            await input.skip(remaining);
            remaining = 0;
            await this.padding(size);
            await this.expect(')');
            completed = true;
          } else if (isAscii(type, 'symlink')) {
            await this.expect('target');
            const offset = input.offset;
            const target = await this.token(MAX_NAR_SYMLINK_TARGET_LENGTH, 'symlink target');
            const problem = narSymlinkTargetProblem(target);
            if (problem) input.fail(`symlink target of ${displayNarPath(path)} ${problem}`, offset);
            await this.expect(')');
            yield { type: 'symlink', path, target };
            completed = true;
          } else if (isAscii(type, 'directory')) {
            yield { type: 'directory', path };
            stack.push({ path });
          } else {
            input.fail(`unknown node type ${JSON.stringify(displayBytes(type))}`, typeOffset);
          }
        } else {
          const frame = stack[stack.length - 1];
          const offset = input.offset;
          const tag = await this.token(MAX_TAG_LENGTH, 'token');
          if (isAscii(tag, ')')) {
            stack.pop();
            yield { type: 'directory-end', path: frame.path };
            completed = true;
          } else if (isAscii(tag, 'entry')) {
            await this.expect('(');
            await this.expect('name');
            const nameOffset = input.offset;
            const name = await this.token(MAX_NAR_NAME_LENGTH, 'entry name');
            const problem = narNameProblem(name);
            if (problem)
              input.fail(`entry name ${JSON.stringify(displayBytes(name))} in ${displayNarPath(frame.path)} ${problem}`, nameOffset);
            if (frame.last && compareBytes(frame.last, name) >= 0) {
              input.fail(
                `entry ${JSON.stringify(displayBytes(name))} in ${displayNarPath(frame.path)} is not after ${JSON.stringify(displayBytes(frame.last))}`,
                nameOffset,
              );
            }
            frame.last = name;
            await this.expect('node');
            next = [...frame.path, name];
          } else {
            input.fail(`expected "entry" or ")", found ${JSON.stringify(displayBytes(tag))}`, offset);
          }
        }
        if (completed) {
          if (stack.length === 0) break;
          await this.expect(')');
        }
      }
      if (!(await input.atEnd())) input.fail('trailing bytes after the archive');
      this.result = this.hasher.digest();
    } finally {
      await input.close();
    }
  }
}

function isAscii(bytes: Uint8Array, text: string): boolean {
  if (bytes.length !== text.length) return false;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}

/** Reads a whole NAR, validating it, and returns its sha256 and size. */
export async function checkNar(source: ByteSource, options: AbortOptions = {}): Promise<NarDigest> {
  const reader = new NarReader(source, options);
  for await (const _ of reader); // unread contents are skipped
  return reader.digest;
}
