import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type BuildEvent,
  type BuildRequest,
  type BuildService,
  buildRequestDigest,
  DummyBuildService,
  validateBuildRequest,
} from '../build/index.js';
import {
  B3Digest,
  fileNode,
  importPath,
  MemoryBlobService,
  MemoryDirectoryService,
  type Node,
  parsePathComponent,
} from '../castore/index.js';
import { utf8 } from '../common/encoding.js';
import { envelopeFromJson } from './dsse.js';
import { isProvenanceError } from './errors.js';
import { generateSigningKeyPem, signingKeyFromPem, verifyingKeyFromPem } from './keys.js';
import { listEnvelopes, readEnvelope } from './provenance-store.js';
import { MemorySidecar } from './sidecar.js';
import { SigningBuildService } from './signing-build-service.js';
import { SLSA_PROVENANCE_V1, type SlsaProvenance } from './slsa-provenance.js';
import type { Statement } from './statement.js';
import { verifyProvenance } from './verify.js';

/** A builder that replays a script of events (with the real build id). */
class ScriptedBuildService implements BuildService {
  readonly name = 'scripted';
  constructor(readonly events: (request: BuildRequest) => BuildEvent[]) {}
  async *build(request: BuildRequest): AsyncGenerator<BuildEvent> {
    for (const event of this.events(request)) yield event;
  }
  async close(): Promise<void> {}
}

describe('SigningBuildService', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-signing-builder-'));
  const store = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
  const pem = generateSigningKeyPem();
  const key = signingKeyFromPem(pem.privateKeyPem);
  const verifying = verifyingKeyFromPem(pem.publicKeyPem);
  const other = verifyingKeyFromPem(generateSigningKeyPem().publicKeyPem);
  let output: Node;
  let request: BuildRequest;
  const events =
    (outputNode: () => Node) =>
    (req: BuildRequest): BuildEvent[] => [
      { type: 'accepted', buildId: buildRequestDigest(req).toString(), invocationId: 'inv-1', backend: 'scripted' },
      { type: 'started' },
      { type: 'log', stream: 'stdout', offset: 0, data: utf8('building\n') },
      {
        type: 'finished',
        response: { outputs: [{ node: outputNode(), needles: [] }] },
        exitCode: 0,
        wallTimeMs: 5,
        cpuTimeMs: 1,
        peakMemoryBytes: 1024,
      },
    ];
  const signing = (inner: BuildService, errors: Error[] = []) =>
    new SigningBuildService(inner, {
      key,
      castore: store,
      sidecar: new MemorySidecar(),
      builderId: (backend) => `urn:kiln:builder:test:${backend}`,
      internalParameters: { backend: 'scripted' },
      onError: (error) => errors.push(error),
    });
  const collect = async (service: BuildService) => {
    const out: BuildEvent[] = [];
    for await (const event of service.build(request)) out.push(event);
    return out;
  };

  before(async () => {
    mkdirSync(join(dir, 'in'));
    writeFileSync(join(dir, 'in/data'), 'input\n');
    writeFileSync(join(dir, 'out'), 'output\n');
    const input = (await importPath(join(dir, 'in'), store)).node;
    output = (await importPath(join(dir, 'out'), store)).node;
    request = validateBuildRequest({
      inputs: [{ name: parsePathComponent('in'), node: input }],
      commandArgs: ['/bin/sh', '-c', 'true'],
      workingDir: 'build',
      scratchPaths: ['build', 'nix/store'],
      inputsDir: 'nix/store',
      outputs: ['nix/store/out'],
      environmentVars: [],
      additionalFiles: [],
      refscanNeedles: [],
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('passes the events through and signs the finished build: the envelope verifies, names the outputs and is stored', async () => {
    const sidecar = new MemorySidecar();
    const service = new SigningBuildService(new ScriptedBuildService(events(() => output)), {
      key,
      castore: store,
      sidecar,
      builderId: (backend) => `urn:kiln:builder:test:${backend}`,
      internalParameters: { backend: 'scripted' },
    });
    const out = await collect(service);
    assert.deepEqual(
      out.map((e) => e.type),
      ['accepted', 'started', 'log', 'finished'],
    );
    const finished = out[3] as Extract<BuildEvent, { type: 'finished' }>;
    assert.equal(finished.exitCode, 0);
    assert.ok(finished.provenance);
    const report = await verifyProvenance(finished.provenance, { key: verifying, store });
    assert.equal(report.keyId, key.keyId);
    const statement = report.statement as unknown as Statement<SlsaProvenance>;
    assert.equal(statement.predicateType, SLSA_PROVENANCE_V1);
    assert.deepEqual(
      statement.subject.map((s) => s.name),
      ['nix/store/out'],
    );
    assert.equal(statement.subject[0]?.digest.blake3, (output as { digest: { toHex(): string } }).digest.toHex());
    const { runDetails, buildDefinition } = statement.predicate;
    assert.equal(runDetails.builder.id, 'urn:kiln:builder:test:scripted');
    assert.equal(runDetails.metadata.invocationId, `${buildRequestDigest(request)}#inv-1`);
    assert.deepEqual(buildDefinition.internalParameters, { backend: 'scripted' });
    const log = runDetails.byproducts[0];
    assert.equal(log?.name, 'log');
    // Stored next to the output, indexed by its digests.
    const stored = await listEnvelopes(statement.subject[0]?.digest ?? {}, sidecar);
    assert.equal(stored.length, 1);
    const { envelope } = await readEnvelope(stored[0] as B3Digest, store.blobService);
    assert.deepEqual(envelope, envelopeFromJson(finished.provenance));
    // Another key does not verify it.
    await assert.rejects(verifyProvenance(finished.provenance, { key: other, store }), (e) => isProvenanceError(e, 'BAD_SIGNATURE'));
  });

  it('a failed build passes through unsigned (the dummy backend)', async () => {
    const errors: Error[] = [];
    const out = await collect(signing(new DummyBuildService(), errors));
    assert.deepEqual(
      out.map((e) => e.type),
      ['accepted', 'failed'],
    );
    assert.deepEqual(errors, []);
  });

  it('a failure to sign keeps the result: finished without provenance, the error reported', async () => {
    const errors: Error[] = [];
    const missingOutput = fileNode(B3Digest.of(utf8('not in the store')), 16);
    const out = await collect(signing(new ScriptedBuildService(events(() => missingOutput)), errors));
    const finished = out.at(-1) as Extract<BuildEvent, { type: 'finished' }>;
    assert.equal(finished.type, 'finished');
    assert.equal(finished.provenance, undefined);
    assert.deepEqual(finished.response.outputs[0]?.node, missingOutput);
    assert.equal(errors.length, 1);
  });
});
