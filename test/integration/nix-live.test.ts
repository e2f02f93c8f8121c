/**
 * Kiln against real Nix: fresh derivations (see nix-live-kit.ts) are
 * instantiated by nix-instantiate, built by Kiln on bwrap and on runc, then
 * by nix-build in Nix's sandbox, and every output must have the same store
 * path, NAR hash, NAR size, references and deriver in both. A fixed-output
 * derivation with a wrong hash fails in both, with the same hash found.

 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildServiceFromUrl } from '../../src/build/index.js';
import { bwrapSkipReason, ociSkipReason } from '../../src/build/testing/index.js';
import { type FsCastore, openFsCastore } from '../../src/castore/index.js';
import { formatNixHash } from '../../src/nix/index.js';
import { isNixBridgeError, LmdbPathInfoService, LocalNixStore, NixBuilder, type PathInfo } from '../../src/nix-bridge/index.js';
import { instantiateLiveSet, LIVE_ATTRS, type LiveSet, nixBuild, nixPathInfo, nixSkipReason } from './nix-live-kit.js';

const skip = nixSkipReason() ?? bwrapSkipReason();
if (skip) console.log(`# skipping the live comparison with Nix: ${skip}`);

interface KilnSide {
  label: string;
  /** attribute → its outputs, or why Kiln failed to build it. */
  outputs: Map<string, Map<string, PathInfo> | Error>;
  fodWrong?: unknown;
  indexBefore?: number;
  indexAfter?: number;
}

async function countRecords(service: LmdbPathInfoService): Promise<number> {
  let n = 0;
  for await (const _ of service.list()) n++;
  return n;
}

describe('Kiln and nix-build give identical outputs for fresh derivations', { skip: skip ?? false, timeout: 600_000 }, () => {
  let work: string;
  let live: LiveSet;
  const sides: KilnSide[] = [];
  let nixFailure: { status: number | null; stderr: string };

  before(async () => {
    work = await mkdtemp('/var/tmp/kiln-nix-live-');
    await chmod(work, 0o755);
    live = await instantiateLiveSet(join(work, 'expr'), randomBytes(6).toString('hex'));
    const backends: [string, string, string | undefined][] = [
      ['bwrap', `bwrap://${join(work, 'sandbox-bwrap')}`, undefined],
      ['oci(runc)', `oci://?runtime=runc&sandbox-dir=${join(work, 'sandbox-runc')}`, ociSkipReason('runc')],
    ];
    for (const [label, url, backendSkip] of backends) {
      if (backendSkip) continue;
      const root = join(work, `castore-${label}`);
      const castore: FsCastore = await openFsCastore(root);
      const pathInfos = LmdbPathInfoService.open(join(root, 'nix-path-info.mdb'));
      const buildService = await buildServiceFromUrl(url, castore);
      try {
        const side: KilnSide = { label, outputs: new Map() };
        const nix = new NixBuilder({
          buildService,
          blobService: castore.blobService,
          directoryService: castore.directoryService,
          pathInfoService: pathInfos,
          nixStore: new LocalNixStore(),
          jobs: 2,
        });
        for (const attr of LIVE_ATTRS) {
          side.outputs.set(attr, await nix.realise(live.drvs.get(attr) as string).catch((error: Error) => error));
        }
        side.indexBefore = await countRecords(pathInfos);
        side.fodWrong = await nix.realise(live.drvs.get('fodWrong') as string).then(
          () => undefined,
          (error: unknown) => error,
        );
        side.indexAfter = await countRecords(pathInfos);
        sides.push(side);
      } finally {
        await buildService.close();
        await pathInfos.close();
        await castore.close();
      }
    }
    const built = nixBuild(LIVE_ATTRS.map((attr) => live.drvs.get(attr) as string));
    assert.equal(built.status, 0, `nix-build failed:\n${built.stderr}`);
    nixFailure = nixBuild([live.drvs.get('fodWrong') as string]);
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const attr of LIVE_ATTRS) {
    it(`${attr}: every output has Nix's path, NAR hash, size, references and deriver`, () => {
      assert.ok(sides.length > 0);
      for (const side of sides) {
        const outputs = side.outputs.get(attr);
        assert.ok(outputs instanceof Map && outputs.size > 0, `${side.label}: ${outputs}`);
        for (const [name, info] of outputs) {
          const path = info.storePath.toAbsolute();
          const nix = nixPathInfo(path);
          const label = `${side.label} ${attr}.${name} ${path}`;
          assert.equal(formatNixHash(info.narHash, 'base16', { prefix: false }), nix.narHash, `${label}: narHash`);
          assert.equal(info.narSize, nix.narSize, `${label}: narSize`);
          assert.deepEqual(info.references, nix.references, `${label}: references`);
          assert.equal(info.deriver, nix.deriver, `${label}: deriver`);
        }
      }
    });
  }

  it('a fixed-output hash mismatch fails in both, naming the same hashes, and Kiln records nothing', () => {
    assert.notEqual(nixFailure.status, 0);
    const nixGot = /got:\s+(sha256-[A-Za-z0-9+/=]+)/.exec(nixFailure.stderr)?.[1];
    const nixSpecified = /specified:\s+(sha256-[A-Za-z0-9+/=]+)/.exec(nixFailure.stderr)?.[1];
    assert.ok(nixGot && nixSpecified, nixFailure.stderr);
    for (const side of sides) {
      assert.equal(side.indexAfter, side.indexBefore, `${side.label}: path-info index changed`);
      assert.ok(isNixBridgeError(side.fodWrong, 'HASH_MISMATCH'), `${side.label}: ${side.fodWrong}`);
      assert.match(
        (side.fodWrong as Error).message,
        new RegExp(`specified: ${nixSpecified.replace(/[+/]/g, '\\$&')}, got: ${nixGot.replace(/[+/]/g, '\\$&')}`),
      );
    }
  });
});
