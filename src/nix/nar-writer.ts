/**
 * Streaming NAR writer over an abstract tree (see nar.ts). Small tokens are
 * gathered into 64 KiB chunks; large content chunks pass through as given.
 */
import type { AbortOptions } from '../common/abort.js';
import { toChunks } from '../common/async-iterable.js';
import { compareBytes, utf8 } from '../common/encoding.js';
import { NixFormatError } from './errors.js';
import { createNixHasher } from './hash.js';
import {
  displayNarPath,
  NAR_MAGIC,
  type NarDigest,
  type NarSourceEntry,
  type NarSourceNode,
  type NarSourceRegular,
  narNameProblem,
  narSymlinkTargetProblem,
} from './nar.js';

const CHUNK_SIZE = 64 * 1024;
const PASS_THROUGH = 16 * 1024;
/** `take()` copies out fewer bytes than this instead of allocating a fresh buffer. */
const SMALL_TAKE = 4096;

/** Accumulates small tokens; `take()` hands out the filled part and starts a fresh buffer. */
class TokenBuffer {
  private buf = new Uint8Array(CHUNK_SIZE + 8192);
  length = 0;

  private ensure(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.length + extra));
    bigger.set(this.buf.subarray(0, this.length));
    this.buf = bigger;
  }

  u64(value: number): void {
    this.ensure(8);
    const view = new DataView(this.buf.buffer, this.length, 8);
    view.setUint32(0, value >>> 0, true);
    view.setUint32(4, Math.floor(value / 0x100000000), true);
    this.length += 8;
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  padding(size: number): void {
    const pad = (8 - (size % 8)) % 8;
    this.ensure(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }

  token(bytes: Uint8Array): void {
    this.u64(bytes.length);
    this.raw(bytes);
    this.padding(bytes.length);
  }

  take(): Uint8Array {
    // A few header bytes are copied out and the buffer kept; a full buffer is handed over whole.
    const small = this.length < SMALL_TAKE;
    const out = small ? this.buf.slice(0, this.length) : this.buf.subarray(0, this.length);
    if (!small) this.buf = new Uint8Array(CHUNK_SIZE + 8192);
    this.length = 0;
    return out;
  }
}

const TOKENS = Object.fromEntries(
  [NAR_MAGIC, '(', ')', 'type', 'regular', 'executable', '', 'contents', 'symlink', 'target', 'directory', 'entry', 'name', 'node'].map(
    (t) => [t, utf8(t)],
  ),
);

function fail(path: readonly Uint8Array[], reason: string): NixFormatError {
  return new NixFormatError('INVALID_NAR', `cannot archive ${displayNarPath(path)}: ${reason}`, {
    details: { path: displayNarPath(path) },
  });
}

interface Frame {
  path: Uint8Array[];
  entries: AsyncIterator<NarSourceEntry> | Iterator<NarSourceEntry>;
  last?: Uint8Array;
}

function iteratorOf<T>(items: Iterable<T> | AsyncIterable<T>): AsyncIterator<T> | Iterator<T> {
  return Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
}

/**
 * Serialises the tree under `root` as a NAR, chunk by chunk. Throws
 * `INVALID_NAR` naming the path when the tree breaks a rule (unsorted or
 * invalid names, bad symlink targets, contents whose length is not `size`).
 */
export async function* writeNar(root: NarSourceNode, options: AbortOptions = {}): AsyncGenerator<Uint8Array> {
  const out = new TokenBuffer();
  const stack: Frame[] = [];
  out.token(TOKENS[NAR_MAGIC]);
  let node: NarSourceNode | undefined = root;
  let path: Uint8Array[] = [];
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      if (node) {
        out.token(TOKENS['(']);
        out.token(TOKENS.type);
        if (node.type === 'regular') {
          out.token(TOKENS.regular);
          if (node.executable) {
            out.token(TOKENS.executable);
            out.token(TOKENS['']);
          }
          out.token(TOKENS.contents);
          yield* writeContents(out, node, path, options);
          out.token(TOKENS[')']);
        } else if (node.type === 'symlink') {
          const target = typeof node.target === 'string' ? utf8(node.target) : node.target;
          const problem = narSymlinkTargetProblem(target);
          if (problem) throw fail(path, `symlink target ${problem}`);
          out.token(TOKENS.symlink);
          out.token(TOKENS.target);
          out.token(target);
          out.token(TOKENS[')']);
        } else if (node.type === 'directory') {
          out.token(TOKENS.directory);
          stack.push({ path, entries: iteratorOf(node.entries) });
        } else {
          throw fail(path, `unknown node type ${JSON.stringify((node as { type: unknown }).type)}`);
        }
        if (node.type !== 'directory' && stack.length > 0) out.token(TOKENS[')']); // closes the entry
        node = undefined;
      }
      if (out.length >= CHUNK_SIZE) yield out.take();
      const frame = stack.at(-1);
      if (!frame) break;
      const next = await frame.entries.next();
      if (next.done) {
        stack.pop();
        out.token(TOKENS[')']);
        if (stack.length > 0) out.token(TOKENS[')']);
        continue;
      }
      const name = typeof next.value.name === 'string' ? utf8(next.value.name) : next.value.name;
      path = [...frame.path, name];
      const problem = narNameProblem(name);
      if (problem) throw fail(path, `invalid entry name: ${problem}`);
      if (frame.last && compareBytes(frame.last, name) >= 0) throw fail(path, 'entries are not in strictly ascending name order');
      frame.last = name;
      out.token(TOKENS.entry);
      out.token(TOKENS['(']);
      out.token(TOKENS.name);
      out.token(name);
      out.token(TOKENS.node);
      node = next.value.node;
    }
  } finally {
    for (const frame of stack.reverse()) await frame.entries.return?.();
  }
  if (out.length > 0) yield out.take();
}

async function* writeContents(
  out: TokenBuffer,
  node: NarSourceRegular,
  path: readonly Uint8Array[],
  options: AbortOptions,
): AsyncGenerator<Uint8Array> {
  if (!Number.isSafeInteger(node.size) || node.size < 0) throw fail(path, `invalid size ${node.size}`);
  out.u64(node.size);
  // The framing so far goes out before the contents are pulled, for a consumer that has the file read into its
  // own buffer right after the framing (a source reading into `readBuffer`).
  if (node.size >= PASS_THROUGH && out.length > 0) yield out.take();
  const source = typeof node.contents === 'function' ? await node.contents() : node.contents;
  let written = 0;
  for await (const chunk of toChunks(source)) {
    options.signal?.throwIfAborted();
    written += chunk.length;
    if (written > node.size) throw fail(path, `contents longer than its size ${node.size}`);
    if (chunk.length >= PASS_THROUGH) {
      if (out.length > 0) yield out.take();
      yield chunk;
    } else {
      out.raw(chunk);
      if (out.length >= CHUNK_SIZE) yield out.take();
    }
  }
  if (written !== node.size) throw fail(path, `contents have ${written} bytes, its size says ${node.size}`);
  out.padding(node.size);
}

/** Writes the NAR only to hash it: its sha256 and length. */
export async function hashNar(root: NarSourceNode, options: AbortOptions = {}): Promise<NarDigest> {
  const hasher = createNixHasher('sha256');
  let narSize = 0;
  for await (const chunk of writeNar(root, options)) {
    hasher.update(chunk);
    narSize += chunk.length;
  }
  return { narHash: hasher.digest(), narSize };
}
