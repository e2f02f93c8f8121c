import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { B3Digest, MemoryBlobService, MemoryDirectoryService } from '../castore/index.js';
import type { Derivation } from '../nix/index.js';
import { builtinFetchurlProblem, runBuiltinFetchurl } from './builtin-fetchurl.js';

function fetchDerivation(env: Record<string, string>, fixed = true): Derivation {
  const out = '/nix/store/00000000000000000000000000000000-fetched';
  return {
    outputs: new Map([
      ['out', fixed ? { path: out, ca: { method: 'flat', hash: { algo: 'sha256', digest: new Uint8Array(32) } } } : { path: out }],
    ]),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    system: 'builtin',
    builder: 'builtin:fetchurl',
    args: [],
    env: new Map(Object.entries({ out, ...env })),
  } as Derivation;
}

const stores = () => ({ blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() });

describe('builtin:fetchurl', () => {
  it('fetches a file:// URL into a file node, executable when asked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-fetchurl-'));
    try {
      await writeFile(join(dir, 'tool'), '#!/bin/sh\n');
      const castore = stores();
      const response = await runBuiltinFetchurl(
        '/nix/store/x.drv',
        fetchDerivation({ url: pathToFileURL(join(dir, 'tool')).href, executable: '1' }),
        castore,
      );
      const [output] = response.outputs;
      assert.deepEqual(output?.needles, []);
      assert.equal(output?.node.type, 'file');
      if (output?.node.type !== 'file') return;
      assert.equal(output.node.executable, true);
      assert.equal(output.node.size, 10);
      assert.ok(output.node.digest.equals(B3Digest.of(Buffer.from('#!/bin/sh\n'))));
      assert.ok(await castore.blobService.has(output.node.digest));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const [what, env, message] of [
    ['no url attribute', {}, /attribute 'url' missing/],
    ['an unsupported scheme', { url: 'ftp://example.org/x' }, /the scheme ftp is not supported/],
    ['an xz NAR to unpack', { url: 'http://127.0.0.1:9/x.nar.xz', unpack: '1' }, /xz-compressed NAR .* is not supported/],
    [
      'a file that is not there',
      { url: 'file:///nonexistent/kiln-fetch' },
      /unable to download 'file:\/\/\/nonexistent\/kiln-fetch': .*ENOENT/,
    ],
  ] as const) {
    it(`fails naming the cause: ${what}`, async () => {
      const castore = stores();
      await assert.rejects(runBuiltinFetchurl('/nix/store/x.drv', fetchDerivation(env), castore), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'BUILD_FAILED');
        assert.match(error.message, /^builder for '\/nix\/store\/x\.drv' failed: /);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  it('must be a fixed-output derivation', () => {
    assert.equal(builtinFetchurlProblem(fetchDerivation({ url: 'http://x/' })), undefined);
    assert.match(builtinFetchurlProblem(fetchDerivation({ url: 'http://x/' }, false)) ?? '', /must be a fixed-output derivation/);
  });
});
