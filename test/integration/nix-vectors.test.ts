import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BuildService, buildServiceFromUrl } from '../../src/build/index.js';
import { bwrapSkipReason, ociSkipReason } from '../../src/build/testing/index.js';
import { type FsCastore, openFsCastore } from '../../src/castore/index.js';
import { formatNixHash, parseNixHash } from '../../src/nix/index.js';
import { formatNarHash, LmdbPathInfoService, LocalNixStore, NixBuilder } from '../../src/nix-bridge/index.js';
import { loadVectors, makeVectorStore, VECTORS_DIR, vectorsSkipReason } from '../../src/nix-bridge/testing/index.js';

const vectors = loadVectors();
const vectorsSkip = vectorsSkipReason(vectors);

for (const [label, url, skip] of [
  ['bwrap', (sandbox: string) => `bwrap://${sandbox}`, bwrapSkipReason()],
  ['oci(runc)', (sandbox: string) => `oci://?runtime=runc&sandbox-dir=${sandbox}`, ociSkipReason('runc')],
] as const) {
  const skipReason = vectorsSkip ?? skip;
  describe(`every Nix 2.8 vector builds on ${label} with the recorded outputs`, { skip: skipReason }, () => {
    let dir: string;
    let castore: FsCastore;
    let pathInfos: LmdbPathInfoService;
    let builder: BuildService;
    let nix: NixBuilder;

    before(async () => {
      if (!vectors) return;
      dir = await mkdtemp('/var/tmp/kiln-nix-vectors-');
      await chmod(dir, 0o755); // build users traverse it
      const storeDir = await makeVectorStore(join(dir, 'nix-store'), vectors);
      castore = await openFsCastore(join(dir, 'castore'));
      pathInfos = LmdbPathInfoService.open(join(dir, 'castore', 'nix-path-info.mdb'));
      builder = await buildServiceFromUrl(url(join(dir, 'sandbox')), castore);
      nix = new NixBuilder({
        buildService: builder,
        blobService: castore.blobService,
        directoryService: castore.directoryService,
        pathInfoService: pathInfos,
        nixStore: new LocalNixStore({
          realStoreDir: storeDir,
          drvSearchDirs: [join(VECTORS_DIR, 'drv')],
          nixStoreProgram: '/nonexistent/nix-store',
        }),
        jobs: 2,
      });
    });

    after(async () => {
      await builder?.close();
      await pathInfos?.close();
      await castore?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    for (const vector of vectors?.derivations ?? []) {
      it(`${vector.name}: output paths, NAR hashes, sizes and references`, async () => {
        const outputs = await nix.realise(vector.drvPath);
        assert.deepEqual([...outputs.keys()].sort(), Object.keys(vector.outputs).sort());
        for (const [name, expected] of Object.entries(vector.outputs)) {
          const info = outputs.get(name);
          assert.ok(info, name);
          assert.equal(info.storePath.toAbsolute(), expected.path);
          assert.equal(formatNarHash(info.narHash), expected.narHashBase32);
          assert.equal(formatNixHash(parseNixHash(expected.narHash), 'nixbase32'), expected.narHashBase32);
          assert.equal(info.narSize, expected.narSize);
          assert.deepEqual(info.references, expected.references);
          assert.equal(info.deriver, vector.drvPath);
        }
      });
    }

    it('the busybox source was recorded with the NAR hash Nix recorded', async () => {
      const info = await pathInfos.get(vectors?.busybox.storePath as string);
      assert.ok(info);
      assert.equal(formatNixHash(info.narHash, 'sri'), vectors?.busybox.narHash);
      assert.equal(info.narSize, vectors?.busybox.narSize);
      assert.deepEqual(info.references, []);
    });
  });
}
