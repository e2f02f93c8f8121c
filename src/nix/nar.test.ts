import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  createReadStream,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { concatBytes } from '../common/async-iterable.js';
import { toHex } from '../common/encoding.js';
import { isNixFormatError } from './errors.js';
import { formatNixHash, hashBytes } from './hash.js';
import type { NarEvent, NarSourceEntry, NarSourceNode } from './nar.js';
import { checkNar, NarReader } from './nar-reader.js';
import { hashNar, writeNar } from './nar-writer.js';

const SNIX = new URL('../../../shared/vectors/snix-fixtures/', import.meta.url);
const fixture = (name: string) => new Uint8Array(readFileSync(new URL(name, SNIX)));
const enc = (s: string) => new TextEncoder().encode(s);
const invalidNar = (e: unknown) => isNixFormatError(e, 'INVALID_NAR');

// Reference §6.6 (computed, cross-checked with sha256sum).
const FIXTURES: { file: string; size: number; sha256: string; nixbase32: string; tree: () => NarSourceNode }[] = [
  {
    file: 'helloworld.nar',
    size: 128,
    sha256: '03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040',
    nixbase32: '0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3',
    tree: () => ({ type: 'regular', size: 12, contents: enc('Hello World!') }),
  },
  {
    file: 'symlink.nar',
    size: 136,
    sha256: '097d397e9b5826384eaa16c457715d1c1a51670313ead0f58566e0b232539cf1',
    nixbase32: '1wcwacrb5q36hpsx1shk0dkm26hwbmqmgi0nm973h9jqkdz3jz89',
    tree: () => ({ type: 'symlink', target: '/nix/store/somewhereelse' }),
  },
  {
    file: 'complicated.nar',
    size: 840,
    sha256: 'ebd52279a8df024c9fd5718de4103bf5e760dc7f2cf49044ee7dea87ab16911a',
    nixbase32: '06li2smqgskxxr291x1cgzf61rzm7c8f93bisnglq0nzm1wj5mgb',
    tree: () => ({
      type: 'directory',
      entries: (async function* (): AsyncGenerator<NarSourceEntry> {
        yield { name: '.keep', node: { type: 'regular', size: 0, contents: [] } };
        yield { name: 'aa', node: { type: 'symlink', target: '/nix/store/somewhereelse' } };
        yield {
          name: 'keep',
          node: { type: 'directory', entries: [{ name: '.keep', node: { type: 'regular', size: 0, contents: () => new Uint8Array(0) } }] },
        };
      })(),
    }),
  },
];

/** Events in a comparable form (paths joined, contents read). */
async function describeEvents(source: AsyncIterable<NarEvent>): Promise<string[]> {
  const out: string[] = [];
  for await (const event of source) {
    const path = `/${event.path.map((c) => Buffer.from(c).toString('latin1')).join('/')}`;
    if (event.type === 'regular') {
      const data = await concatBytes(event.contents);
      assert.equal(data.length, event.size);
      out.push(`regular ${path}${event.executable ? ' x' : ''} ${Buffer.from(data).toString('latin1')}`);
    } else if (event.type === 'symlink') out.push(`symlink ${path} -> ${Buffer.from(event.target).toString('latin1')}`);
    else out.push(`${event.type} ${path}`);
  }
  return out;
}

/** Rebuilds a writer tree from reader events (contents copied, so small NARs only). */
async function treeFromNar(bytes: Uint8Array): Promise<NarSourceNode> {
  const stack: NarSourceEntry[][] = [];
  let root: NarSourceNode | undefined;
  const place = (node: NarSourceNode, name: Uint8Array | undefined) => {
    if (name === undefined) root = node;
    else stack[stack.length - 1].push({ name, node });
  };
  for await (const event of new NarReader(bytes)) {
    const name = event.path.at(-1);
    if (event.type === 'directory') {
      const entries: NarSourceEntry[] = [];
      place({ type: 'directory', entries }, name);
      stack.push(entries);
    } else if (event.type === 'directory-end') stack.pop();
    else if (event.type === 'symlink') place({ type: 'symlink', target: event.target.slice() }, name);
    else place({ type: 'regular', executable: event.executable, size: event.size, contents: await concatBytes(event.contents) }, name);
  }
  return root as NarSourceNode;
}

function* byteChunks(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

describe('NAR fixtures', () => {
  for (const f of FIXTURES) {
    it(`${f.file}: writer reproduces it byte for byte, with its hash and size`, async () => {
      const bytes = fixture(f.file);
      assert.equal(bytes.length, f.size);
      assert.deepEqual(await concatBytes(writeNar(f.tree())), bytes);
      const digest = await hashNar(f.tree());
      assert.equal(digest.narSize, f.size);
      assert.equal(toHex(digest.narHash.digest), f.sha256);
      assert.equal(formatNixHash(digest.narHash, 'nixbase32'), `sha256:${f.nixbase32}`);
    });

    it(`${f.file}: reader validates it, computes its hash and size, in any chunking`, async () => {
      const bytes = fixture(f.file);
      const reference = await describeEvents(new NarReader(bytes));
      for (const size of [1, 3, 8, 13, 1000]) {
        const reader = new NarReader(byteChunks(bytes, size));
        assert.deepEqual(await describeEvents(reader), reference);
        assert.equal(reader.digest.narSize, f.size);
        assert.equal(toHex(reader.digest.narHash.digest), f.sha256);
      }
      const digest = await checkNar(byteChunks(bytes, 7));
      assert.equal(toHex(digest.narHash.digest), f.sha256);
      assert.deepEqual(await concatBytes(writeNar(await treeFromNar(bytes))), bytes);
    });
  }

  it('complicated.nar yields its events in archive order', async () => {
    assert.deepEqual(await describeEvents(new NarReader(fixture('complicated.nar'))), [
      'directory /',
      'regular /.keep ',
      'symlink /aa -> /nix/store/somewhereelse',
      'directory /keep',
      'regular /keep/.keep ',
      'directory-end /keep',
      'directory-end /',
    ]);
  });

  it('skips contents the consumer does not read, and refuses late reads', async () => {
    const reader = new NarReader(fixture('helloworld.nar'));
    let late: AsyncIterable<Uint8Array> | undefined;
    for await (const event of reader) if (event.type === 'regular') late = event.contents;
    assert.equal(reader.digest.narSize, 128);
    const tree = (await treeFromNar(fixture('helloworld.nar'))) as { contents: Uint8Array };
    assert.equal(Buffer.from(tree.contents).toString(), 'Hello World!');
    await assert.rejects(async () => {
      for await (const _ of late as AsyncIterable<Uint8Array>);
    }, /moved on/);
  });

  it('only gives the digest after the whole archive', async () => {
    const reader = new NarReader(fixture('complicated.nar'));
    assert.throws(() => reader.digest);
    for await (const event of reader) if (event.type === 'symlink') break;
    assert.throws(() => reader.digest);
  });
});

/** A raw NAR token stream, for building archives the writer would refuse. */
function rawNar(...tokens: (string | Uint8Array | number)[]): Uint8Array {
  const parts: Buffer[] = [];
  for (const token of tokens) {
    if (typeof token === 'number') {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(token));
      parts.push(b);
      continue;
    }
    const bytes = typeof token === 'string' ? Buffer.from(token, 'latin1') : Buffer.from(token);
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(bytes.length));
    parts.push(header, bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8));
  }
  return new Uint8Array(Buffer.concat(parts));
}

const file = (contents: string) => ['(', 'type', 'regular', 'contents', contents, ')'];
const dir = (...entries: [string | Uint8Array, (string | Uint8Array | number)[]][]) => [
  '(',
  'type',
  'directory',
  ...entries.flatMap(([name, node]) => ['entry', '(', 'name', name, 'node', ...node, ')']),
  ')',
];

describe('NAR reader: bad input', () => {
  it('accepts the raw builder form of a valid archive', async () => {
    const bytes = rawNar('nix-archive-1', ...dir(['a', file('x')], ['b', ['(', 'type', 'symlink', 'target', 'a', ')']]));
    const digest = await checkNar(bytes);
    assert.equal(digest.narSize, bytes.length);
  });

  const cases: [string, Uint8Array, RegExp][] = [
    ['bad magic', rawNar('nix-archive-2', ...file('x')), /expected "nix-archive-1"/],
    ['unknown type', rawNar('nix-archive-1', '(', 'type', 'fifo', ')'), /unknown node type "fifo"/],
    ['unsorted names', rawNar('nix-archive-1', ...dir(['b', file('')], ['a', file('')])), /"a" in \/ is not after "b"/],
    ['duplicate names', rawNar('nix-archive-1', ...dir(['a', file('')], ['a', file('')])), /is not after/],
    ['name "."', rawNar('nix-archive-1', ...dir(['.', file('')])), /is "."/],
    ['name ".."', rawNar('nix-archive-1', ...dir(['..', file('')])), /is ".."/],
    ['empty name', rawNar('nix-archive-1', ...dir(['', file('')])), /empty/],
    ['name with a slash', rawNar('nix-archive-1', ...dir(['a/b', file('')])), /contains "\/"/],
    ['name with NUL', rawNar('nix-archive-1', ...dir(['a\0b', file('')])), /contains NUL/],
    ['name of 256 bytes', rawNar('nix-archive-1', ...dir(['a'.repeat(256), file('')])), /longer than 255/],
    ['empty symlink target', rawNar('nix-archive-1', '(', 'type', 'symlink', 'target', '', ')'), /target of \/ empty/],
    ['symlink target with NUL', rawNar('nix-archive-1', '(', 'type', 'symlink', 'target', 'a\0', ')'), /contains NUL/],
    ['symlink target of 4096 bytes', rawNar('nix-archive-1', '(', 'type', 'symlink', 'target', 'a'.repeat(4096), ')'), /longer than 4095/],
    [
      'executable flag with a value',
      rawNar('nix-archive-1', '(', 'type', 'regular', 'executable', 'yes', 'contents', 'x', ')'),
      /expected ""/,
    ],
    ['missing contents', rawNar('nix-archive-1', '(', 'type', 'regular', ')'), /expected "contents"/],
    ['missing close', rawNar('nix-archive-1', '(', 'type', 'regular', 'contents', 'x', 'x'), /expected "\)"/],
    ['junk in a directory', rawNar('nix-archive-1', '(', 'type', 'directory', 'junk', ')'), /expected "entry" or "\)"/],
    [
      'trailing bytes',
      new Uint8Array([...fixture('helloworld.nar'), 0, 0, 0, 0, 0, 0, 0, 0]),
      /trailing bytes after the archive at byte 128/,
    ],
    ['a length beyond 2^53', rawNar('nix-archive-1', '(', 'type', 'regular', 'contents', 2 ** 60), /beyond 2\^53/],
    ['a huge tag', rawNar('nix-archive-1', '(', 'type', 'x'.repeat(100), ')'), /longer than 16/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`rejects ${what}`, async () => {
      await assert.rejects(checkNar(bytes), (e) => invalidNar(e) && message.test(e.message) && typeof e.details.offset === 'number');
    });
  }

  it('rejects non-zero padding, naming its offset', async () => {
    const bytes = fixture('helloworld.nar').slice();
    bytes[0x6c] = 1; // padding after "Hello World!"
    await assert.rejects(
      checkNar(bytes),
      (e) => invalidNar(e) && /non-zero padding at byte 108/.test(e.message) && e.details.offset === 0x6c,
    );
  });

  it('rejects every truncation of complicated.nar', async () => {
    const bytes = fixture('complicated.nar');
    for (let n = 0; n < bytes.length; n++) {
      await assert.rejects(
        checkNar(bytes.subarray(0, n)),
        (e) => invalidNar(e) && /unexpected end/.test(e.message),
        `prefix of ${n} bytes`,
      );
    }
  });

  it('stops on abort with the signal reason', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await assert.rejects(checkNar(fixture('complicated.nar'), { signal: controller.signal }), /stop/);
    await assert.rejects(hashNar(FIXTURES[2].tree(), { signal: controller.signal }), /stop/);
  });
});

describe('NAR writer: bad trees', () => {
  const cases: [string, NarSourceNode, RegExp][] = [
    [
      'unsorted entries',
      {
        type: 'directory',
        entries: [
          { name: 'b', node: { type: 'symlink', target: 'x' } },
          { name: 'a', node: { type: 'symlink', target: 'x' } },
        ],
      },
      /cannot archive \/a: entries are not in strictly ascending name order/,
    ],
    [
      'duplicate entries',
      {
        type: 'directory',
        entries: [
          { name: 'a', node: { type: 'symlink', target: 'x' } },
          { name: 'a', node: { type: 'symlink', target: 'x' } },
        ],
      },
      /strictly ascending/,
    ],
    [
      'a name with a slash',
      { type: 'directory', entries: [{ name: 'a/b', node: { type: 'symlink', target: 'x' } }] },
      /invalid entry name: contains "\/"/,
    ],
    ['a name ".."', { type: 'directory', entries: [{ name: '..', node: { type: 'symlink', target: 'x' } }] }, /is "\.\."/],
    ['an empty symlink target', { type: 'symlink', target: '' }, /symlink target empty/],
    ['short contents', { type: 'regular', size: 5, contents: enc('abc') }, /contents have 3 bytes, its size says 5/],
    ['long contents', { type: 'regular', size: 2, contents: enc('abc') }, /longer than its size 2/],
    ['a negative size', { type: 'regular', size: -1, contents: [] }, /invalid size/],
  ];
  for (const [what, tree, message] of cases) {
    it(`refuses ${what}`, async () => {
      await assert.rejects(concatBytes(writeNar(tree)), (e) => invalidNar(e) && message.test(e.message));
    });
  }
});

describe('NAR streaming', () => {
  it('streams a 256 MiB file through writer and reader with bounded memory', async () => {
    const chunk = new Uint8Array(1 << 20).fill(0x61);
    const size = 256 * chunk.length;
    const tree = (): NarSourceNode => ({
      type: 'directory',
      entries: [
        {
          name: 'big',
          node: {
            type: 'regular',
            executable: true,
            size,
            contents: function* () {
              for (let i = 0; i < 256; i++) yield chunk;
            },
          },
        },
        { name: 'small', node: { type: 'regular', size: 3, contents: enc('abc') } },
      ],
    });
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let maxChunk = 0;
    const written = async function* () {
      for await (const part of writeNar(tree())) {
        maxChunk = Math.max(maxChunk, part.length);
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
        yield part;
      }
    };
    const reader = new NarReader(written());
    let seen = 0;
    for await (const event of reader) {
      if (event.type === 'regular' && event.size === size) {
        assert.equal(event.executable, true);
        for await (const part of event.contents) {
          assert.ok(part.length <= chunk.length);
          seen += part.length;
        }
      }
    }
    assert.equal(seen, size);
    assert.ok(maxChunk <= chunk.length, `largest chunk ${maxChunk}`);
    assert.ok(peak < 64 * 1024 * 1024, `array buffers grew by ${peak} bytes`);
    const hashed = await hashNar(tree());
    assert.equal(reader.digest.narSize, hashed.narSize);
    assert.equal(toHex(reader.digest.narHash.digest), toHex(hashed.narHash.digest));
  });
});

/** A writer tree over a real directory (test-only walker: names sorted by bytes, files opened lazily). */
function fsTree(path: Buffer): NarSourceNode {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) return { type: 'symlink', target: readlinkSync(path, { encoding: 'buffer' }) };
  if (stat.isFile()) {
    return { type: 'regular', executable: (stat.mode & 0o100) !== 0, size: stat.size, contents: () => createReadStream(path) };
  }
  const names = readdirSync(path, { encoding: 'buffer' }).sort(Buffer.compare);
  return {
    type: 'directory',
    entries: (function* () {
      for (const name of names) yield { name, node: fsTree(Buffer.concat([path, Buffer.from('/'), name])) };
    })(),
  };
}

const nixStore = (() => {
  try {
    execFileSync('nix-store', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('NAR against Nix', { skip: nixStore ? false : 'nix-store is not installed' }, () => {
  it('writes exactly what nix-store --dump writes, and reads it back', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-nar-'));
    try {
      const tree = join(root, 'tree');
      execFileSync('mkdir', ['-p', join(tree, 'sub/deeper'), join(tree, 'empty-dir')]);
      writeFileSync(join(tree, 'hello'), 'Hello World!');
      writeFileSync(join(tree, 'empty'), '');
      writeFileSync(join(tree, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
      writeFileSync(join(tree, 'sub/deeper/big'), Buffer.alloc(300_001, 7));
      writeFileSync(join(tree, 'Zcaps'), 'z');
      writeFileSync(join(tree, 'räksmörgås'), 'utf-8 name');
      writeFileSync(Buffer.from(`${tree}/latin1-\xe9`, 'latin1'), 'non-utf-8 name');
      symlinkSync('../hello', join(tree, 'sub/link'));
      symlinkSync('/nix/store/somewhereelse', join(tree, 'abs-link'));
      const expected = new Uint8Array(execFileSync('nix-store', ['--dump', tree], { maxBuffer: 1 << 26 }));
      assert.deepEqual(await concatBytes(writeNar(fsTree(Buffer.from(tree)))), expected);
      const digest = await hashNar(fsTree(Buffer.from(tree)));
      const nixHash = execFileSync('nix-hash', ['--type', 'sha256', '--base32', tree]).toString().trim();
      assert.equal(formatNixHash(digest.narHash, 'nixbase32', { prefix: false }), nixHash);
      assert.equal(formatNixHash(hashBytes('sha256', expected), 'nixbase32', { prefix: false }), nixHash);
      const reread = await concatBytes(writeNar(await treeFromNar(expected)));
      assert.deepEqual(reread, expected);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
