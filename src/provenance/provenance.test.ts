import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BuildRequest, type BuildResponse, buildRequestDigest, validateBuildRequest } from '../build/index.js';
import { importPath, MemoryBlobService, MemoryDirectoryService, type Node, parsePathComponent } from '../castore/index.js';
import { utf8 } from '../common/encoding.js';
import { compareOutputs, formatComparison } from './compare-outputs.js';
import { diskDigests, nodeDigests } from './digests.js';
import { envelopeFromJson, envelopeToJson, signEnvelope } from './dsse.js';
import { isProvenanceError } from './errors.js';
import { generateSigningKeyPem, signingKeyFromPem, verifyingKeyFromPem } from './keys.js';
import { listEnvelopes, readEnvelope, storeEnvelope } from './provenance-store.js';
import { lookupResult, recordResult } from './result-cache.js';
import { FsSidecar, indexKeys, MemorySidecar, sidecarForStore } from './sidecar.js';
import {
  type BuildRun,
  buildProvenance,
  KILN_BUILD_TYPE,
  KILN_NIX_BUILD_TYPE,
  KILN_REPRODUCED_PREDICATE,
  nixBuildDefinition,
  reproducedStatement,
  SLSA_PROVENANCE_V1,
} from './slsa-provenance.js';
import { statementFromBytes, statementToBytes } from './statement.js';
import { verifyProvenance } from './verify.js';

const code = (c: string) => (e: unknown) => isProvenanceError(e) && e.code === c;
const hasNix = spawnSync('nix-store', ['--version']).status === 0;

describe('provenance', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-provenance-'));
  const store = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
  const importTree = async (path: string) => (await importPath(path, store)).node;
  let input: Node;
  let outA: Node;
  let outB: Node;
  let outFile: Node;
  let request: BuildRequest;
  let response: BuildResponse;
  const key = (() => {
    const pem = generateSigningKeyPem();
    return { signing: signingKeyFromPem(pem.privateKeyPem), verifying: verifyingKeyFromPem(pem.publicKeyPem) };
  })();
  const run: BuildRun = {
    buildId: '',
    invocationId: '5b0c7a4e-0000-4000-8000-000000000001',
    backend: 'bwrap',
    builderId: 'https://kiln.dev/test-builder',
    startedOn: '2025-01-01T00:00:00.000Z',
    finishedOn: '2025-01-01T00:00:01.000Z',
    log: { digest: { blake3: 'ab'.repeat(32), sha256: 'cd'.repeat(32) }, size: 12 },
    internalParameters: { backend: 'bwrap' },
  };

  before(async () => {
    mkdirSync(join(dir, 'in/sub'), { recursive: true });
    writeFileSync(join(dir, 'in/sub/data'), 'input data\n');
    mkdirSync(join(dir, 'a/bin'), { recursive: true });
    writeFileSync(join(dir, 'a/bin/tool'), '#!/bin/sh\necho hi\n');
    chmodSync(join(dir, 'a/bin/tool'), 0o755);
    writeFileSync(join(dir, 'a/stamp'), 'line 1\nbuilt at 10:00\nline 3\n');
    symlinkSync('bin/tool', join(dir, 'a/link'));
    mkdirSync(join(dir, 'b/bin'), { recursive: true });
    writeFileSync(join(dir, 'b/bin/tool'), '#!/bin/sh\necho hi\n');
    chmodSync(join(dir, 'b/bin/tool'), 0o755);
    writeFileSync(join(dir, 'b/stamp'), 'line 1\nbuilt at 10:05\nline 3\n');
    writeFileSync(join(dir, 'b/extra'), Buffer.from([0, 1, 2]));
    symlinkSync('bin/tool', join(dir, 'b/link'));
    writeFileSync(join(dir, 'single'), 'one file\n');
    input = await importTree(join(dir, 'in'));
    outA = await importTree(join(dir, 'a'));
    outB = await importTree(join(dir, 'b'));
    outFile = await importTree(join(dir, 'single'));
    request = validateBuildRequest({
      inputs: [{ name: parsePathComponent('in'), node: input }],
      commandArgs: ['/bin/sh', '-c', 'true'],
      workingDir: 'build',
      scratchPaths: ['build', 'nix/store'],
      inputsDir: 'nix/store',
      outputs: ['nix/store/out', 'nix/store/single'],
      environmentVars: [],
      additionalFiles: [],
      refscanNeedles: [],
    });
    response = {
      outputs: [
        { node: outA, needles: [] },
        { node: outFile, needles: [] },
      ],
    };
    (run as { buildId: string }).buildId = buildRequestDigest(request).toString();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('states an SLSA v1 provenance: subjects with blake3 and NAR sha256, the request, inputs, builder, times, log', async () => {
    const statement = await buildProvenance(request, response, run, store);
    assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
    assert.equal(statement.predicateType, SLSA_PROVENANCE_V1);
    assert.deepEqual(
      statement.subject.map((s) => s.name),
      ['nix/store/out', 'nix/store/single'],
    );
    assert.equal(statement.subject[0]?.digest.blake3, (outA as { digest: { toHex(): string } }).digest.toHex());
    assert.match(statement.subject[0]?.digest.sha256 ?? '', /^[0-9a-f]{64}$/);
    const { buildDefinition, runDetails } = statement.predicate;
    assert.equal(buildDefinition.buildType, KILN_BUILD_TYPE);
    assert.deepEqual(buildDefinition.externalParameters.outputs, ['nix/store/out', 'nix/store/single']);
    assert.deepEqual(buildDefinition.internalParameters, { backend: 'bwrap' });
    assert.equal(buildDefinition.resolvedDependencies.length, 1);
    assert.equal(buildDefinition.resolvedDependencies[0]?.name, 'nix/store/in');
    assert.deepEqual(Object.keys(buildDefinition.resolvedDependencies[0]?.digest ?? {}), ['blake3', 'sha256']);
    assert.equal(runDetails.builder.id, 'https://kiln.dev/test-builder');
    assert.equal(runDetails.metadata.invocationId, `${run.buildId}#${run.invocationId}`);
    assert.equal(runDetails.metadata.startedOn, run.startedOn);
    assert.equal(runDetails.byproducts[0]?.name, 'log');
    assert.deepEqual(statementFromBytes(statementToBytes(statement)), JSON.parse(JSON.stringify(statement)));
  });

  it('NAR sha256 and blake3 agree whether computed from the castore or from disk (and with nix-store --dump)', async () => {
    for (const [name, node] of [
      ['a', outA],
      ['single', outFile],
    ] as const) {
      const fromStore = await nodeDigests(node, store);
      const fromDisk = await diskDigests(join(dir, name));
      assert.deepEqual(fromDisk.digests, fromStore);
      if (hasNix) {
        const nar = execFileSync('nix-store', ['--dump', join(dir, name)]);
        const sha = execFileSync('sha256sum', { input: nar }).toString().split(' ')[0];
        assert.equal(fromStore.sha256, sha);
      }
    }
  });

  it('lets the Nix front end supply the derivation as the build definition and store paths as names', async () => {
    const definition = nixBuildDefinition('/nix/store/aaaa-x.drv', 'Derive([])');
    const statement = await buildProvenance(request, response, run, store, {
      definition,
      subjectNames: ['/nix/store/bbbb-out', '/nix/store/cccc-single'],
    });
    assert.equal(statement.predicate.buildDefinition.buildType, KILN_NIX_BUILD_TYPE);
    assert.deepEqual(statement.predicate.buildDefinition.externalParameters, {
      derivation: {
        path: '/nix/store/aaaa-x.drv',
        digest: { sha256: execFileSync('sha256sum', { input: 'Derive([])' }).toString().split(' ')[0] },
      },
    });
    assert.equal(statement.subject[0]?.name, '/nix/store/bbbb-out');
  });

  it('verifies against the store and against disk; fails on a swapped subject, a missing subject, a foreign artifact', async () => {
    const statement = await buildProvenance(request, response, run, store);
    const envelope = signEnvelope(statementToBytes(statement), key.signing);
    const report = await verifyProvenance(envelopeToJson(envelope), { key: key.verifying, store });
    assert.deepEqual(
      report.checked.map((c) => c.against),
      ['store', 'store'],
    );
    const disk = await diskDigests(join(dir, 'a'));
    const byDisk = await verifyProvenance(envelope, { key: key.verifying, artifacts: [{ label: 'a', digests: disk.digests }] });
    assert.deepEqual(byDisk.checked, [{ subject: 'nix/store/out', against: 'a' }]);

    // an artifact the statement is not about
    const other = await diskDigests(join(dir, 'b'));
    await assert.rejects(
      verifyProvenance(envelope, { key: key.verifying, artifacts: [{ label: 'b', digests: other.digests }] }),
      (e: unknown) => code('SUBJECT_MISMATCH')(e) && /b \(blake3:.*matches no subject/.test((e as Error).message),
    );

    // a subject swapped in the payload without re-signing: the signature breaks
    const swapped = JSON.parse(JSON.stringify(statement));
    swapped.subject[0].digest = other.digests;
    const forged = { ...envelope, payload: Buffer.from(JSON.stringify(swapped)).toString('base64') };
    await assert.rejects(verifyProvenance(forged, { key: key.verifying, store }), code('BAD_SIGNATURE'));

    // a signed statement whose subject digests do not match the store's artifact
    swapped.subject[0].digest = { ...statement.subject[0]?.digest, sha256: other.digests.sha256 };
    const resigned = signEnvelope(utf8(JSON.stringify(swapped)), key.signing);
    await assert.rejects(
      verifyProvenance(resigned, { key: key.verifying, store }),
      (e: unknown) => code('SUBJECT_MISMATCH')(e) && /subject nix\/store\/out: the stored artifact's sha256 is/.test((e as Error).message),
    );

    // the outputs are not in this (empty) store
    const empty = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
    await assert.rejects(verifyProvenance(envelope, { key: key.verifying, store: empty }), code('SUBJECT_MISSING'));

    // a statement of another kind
    const foreign = signEnvelope(utf8(JSON.stringify({ ...statement, predicateType: 'https://example.com/other' })), key.signing);
    await assert.rejects(verifyProvenance(foreign, { key: key.verifying, store }), code('INVALID_STATEMENT'));
  });

  it('stores envelopes as blobs, indexed by every subject digest, in memory and on disk', async () => {
    const statement = await buildProvenance(request, response, run, store);
    const envelope = signEnvelope(statementToBytes(statement), key.signing);
    for (const sidecar of [new MemorySidecar(), new FsSidecar(join(dir, 'sidecar'))]) {
      const digest = await storeEnvelope(envelope, statement, store.blobService, sidecar);
      await storeEnvelope(envelope, statement, store.blobService, sidecar); // idempotent
      const byBlake3 = await listEnvelopes({ blake3: statement.subject[0]?.digest.blake3 as string }, sidecar);
      const bySha = await listEnvelopes({ sha256: statement.subject[1]?.digest.sha256 as string }, sidecar);
      assert.deepEqual(
        byBlake3.map((d) => d.toString()),
        [digest.toString()],
      );
      assert.deepEqual(
        bySha.map((d) => d.toString()),
        [digest.toString()],
      );
      assert.deepEqual(await listEnvelopes({ sha256: '00'.repeat(32) }, sidecar), []);
      const { envelope: read } = await readEnvelope(digest, store.blobService);
      assert.deepEqual(read, envelopeFromJson(envelopeToJson(envelope)));
    }
  });

  it('states that a build reproduced, with both runs', async () => {
    const statement = await buildProvenance(request, response, run, store);
    const second = { ...run, backend: 'oci(runc)', invocationId: 'second' };
    const reproduced = reproducedStatement({ buildType: KILN_BUILD_TYPE, externalParameters: {} }, [run, second], statement.subject);
    assert.equal(reproduced.predicateType, KILN_REPRODUCED_PREDICATE);
    assert.deepEqual(
      reproduced.predicate.runs.map((r) => r.backend),
      ['bwrap', 'oci(runc)'],
    );
    const envelope = signEnvelope(statementToBytes(reproduced), key.signing);
    const report = await verifyProvenance(envelope, { key: key.verifying, store });
    assert.equal(report.statement.predicateType, KILN_REPRODUCED_PREDICATE);
  });

  it('result cache: miss, hit, stale when an output is gone', async () => {
    const sidecar = new FsSidecar(join(dir, 'cache'));
    const id = buildRequestDigest(request);
    assert.deepEqual(await lookupResult(sidecar, id, store), { status: 'miss' });
    await recordResult(sidecar, id, { response, run, wallTimeMs: 1000, cpuTimeMs: 10, peakMemoryBytes: 1 });
    const hit = await lookupResult(sidecar, id, store);
    assert.equal(hit.status, 'hit');
    if (hit.status === 'hit') {
      assert.deepEqual(hit.build.response, response);
      assert.deepEqual(hit.build.run, run);
    }
    const empty = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
    assert.deepEqual(await lookupResult(sidecar, id, empty), { status: 'stale' });
  });

  it('compares two runs: lists differing files with size and digest, a text diff for small text files', async () => {
    const comparison = await compareOutputs(
      ['nix/store/out'],
      { outputs: [{ node: outA, needles: [] }] },
      { outputs: [{ node: outB, needles: [] }] },
      store,
    );
    assert.equal(comparison.identical, false);
    assert.deepEqual(
      comparison.differences.map((d) => d.path),
      ['nix/store/out/extra', 'nix/store/out/stamp'],
    );
    const [extra, stamp] = comparison.differences;
    assert.equal(extra?.first, undefined);
    assert.deepEqual(extra?.second?.size, 3);
    assert.equal(extra?.diff, undefined, 'no text diff for binary files');
    assert.equal(stamp?.first?.size, 29);
    assert.match(stamp?.first?.digest ?? '', /^blake3-/);
    assert.equal(stamp?.diff, '  line 1\n- built at 10:00\n+ built at 10:05\n  line 3');
    const text = formatComparison(comparison, ['bwrap', 'runc']);
    assert.match(text, /nix\/store\/out\/stamp\n {4}bwrap: file size=29 blake3-/);
    const same = await compareOutputs(['x'], { outputs: [{ node: outA, needles: [] }] }, { outputs: [{ node: outA, needles: [] }] }, store);
    assert.equal(same.identical, true);
  });

  it('keeps the sidecar beside the embedded store, under KILN_HOME for remote stores, in memory for memory://', () => {
    const env = { KILN_HOME: '/var/kh' };
    const owner = {};
    assert.equal((sidecarForStore('/srv/store', owner, env) as FsSidecar).dir, '/srv/store/provenance');
    assert.equal((sidecarForStore('file:///srv/store', owner, env) as FsSidecar).dir, '/srv/store/provenance');
    const remote = sidecarForStore('grpc+unix:///run/kiln.sock?token-file=/t', owner, env) as FsSidecar;
    assert.match(remote.dir, /^\/var\/kh\/remote-stores\/[0-9a-f]{32}\/provenance$/);
    assert.equal(
      (sidecarForStore('grpc+unix:///run/kiln.sock', owner, env) as FsSidecar).dir,
      remote.dir,
      'credentials do not change the identity',
    );
    const memory = sidecarForStore('memory://', owner, env);
    assert.ok(memory instanceof MemorySidecar);
    assert.equal(sidecarForStore('memory://', owner, env), memory, 'one per opened store');
    assert.notEqual(sidecarForStore('memory://', {}, env), memory);
    assert.deepEqual(indexKeys({ blake3: 'ab'.repeat(32), sha256: 'cd'.repeat(32), 'bad alg': 'ff' }), [
      `blake3-${'ab'.repeat(32)}`,
      `sha256-${'cd'.repeat(32)}`,
    ]);
  });
});
