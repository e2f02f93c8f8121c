/**
 * Provenance and reproducibility from the outside, on real bubblewrap and
 * runc: key generation, signed provenance of a build verified by Kiln and
 * by openssl (a verifier that is not ours), verification failures with
 * their reasons, listing per output, `--check` catching a
 * non-deterministic build with a diff and passing a deterministic one on
 * bwrap versus runc, and the result cache.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason, ociSkipReason } from '../../src/build/testing/index.js';
import { parseNixHash } from '../../src/nix/index.js';
import { loadVectors, makeVectorStore, vectorsSkipReason, writeTestDerivation } from '../../src/nix-bridge/testing/index.js';
import { preAuthEncoding } from '../../src/provenance/index.js';
import { sandboxDir, shellRequest, tempDir, writeRequest } from './build-cli-kit.js';
import { runKiln } from './run-kiln.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping kiln provenance CLI tests: ${skip}`);
const skipRunc = skip ?? ociSkipReason('runc');
const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });
const skipOpenssl = openssl.status === 0 && /^OpenSSL 3/.test(openssl.stdout) ? undefined : 'openssl 3 is not installed';

interface Envelope {
  payloadType: string;
  payload: string;
  signatures: { keyid?: string; sig: string }[];
}

describe('kiln provenance CLI', { skip: skip ?? false }, () => {
  let work: string;
  let key: string;
  let otherKey: string;
  const sandbox = sandboxDir('provenance');
  const bwrap = `bwrap://${sandbox}`;
  const runc = `oci://?runtime=runc&sandbox-dir=${sandbox}`;
  before(async () => {
    work = await tempDir('kiln-provenance-cli-');
    key = join(work, 'signing.key');
    otherKey = join(work, 'other.key');
    for (const k of [key, otherKey]) {
      const result = await runKiln(['key', 'generate', '--out', k]);
      assert.equal(result.status, 0, result.stderr);
    }
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(sandbox, { recursive: true, force: true });
  });
  const freshEnv = async () => ({ KILN_HOME: await fs.mkdtemp(join(work, 'home-')) });
  const request = (script: string) => writeRequest(work, shellRequest(script));
  /** A deterministic build: a small tree with a text file, an executable and a symlink. */
  const deterministic = (token: string) =>
    request(
      `mkdir -p $out/bin $out/share; printf 'hello %s\\n' ${token} > $out/share/greeting; printf '#!/bin/sh\\necho hi\\n' > $out/bin/hi; chmod +x $out/bin/hi; ln -s bin/hi $out/link; echo built ${token}`,
    );
  const readEnvelope = async (path: string) => JSON.parse(await fs.readFile(path, 'utf8')) as Envelope;
  const payloadOf = (envelope: Envelope) => JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8'));

  it('key generate writes a 0600 PKCS#8 private key and an SPKI public key, prints the key id, refuses to overwrite', async () => {
    const out = join(work, 'k1');
    const result = await runKiln(['key', 'generate', '--out', out]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal((await fs.stat(out)).mode & 0o777, 0o600);
    assert.match(await fs.readFile(out, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(await fs.readFile(`${out}.pub`, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
    const keyId = result.stdout.trim();
    assert.match(keyId, /^[0-9a-f]{64}$/);
    if (!skipOpenssl) {
      assert.match(execFileSync('openssl', ['pkey', '-in', out, '-noout', '-text']).toString(), /ED25519 Private-Key/);
      const der = execFileSync('openssl', ['pkey', '-pubin', '-in', `${out}.pub`, '-outform', 'DER']);
      assert.equal(execFileSync('openssl', ['dgst', '-sha256', '-r'], { input: der }).toString().split(' ')[0], keyId);
    }
    const again = await runKiln(['key', 'generate', '--out', out]);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /exists/);
    assert.equal((await runKiln(['key', 'generate'])).status, 2);
  });

  describe('a signed build', () => {
    let env: { KILN_HOME: string };
    let envelopePath: string;
    let envelope: Envelope;
    let exported: string;
    let outputDigest: string;
    before(async () => {
      env = await freshEnv();
      envelopePath = join(work, 'hello.provenance.json');
      exported = join(work, 'exported');
      const result = await runKiln(
        [
          'build',
          await deterministic('signed'),
          '--builder',
          bwrap,
          '--sign-key',
          key,
          '--provenance',
          envelopePath,
          '--export',
          exported,
          '--json',
        ],
        env,
      );
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stderr, /^kiln: provenance blake3-\S+ signed by key [0-9a-f]{64}, written to /m);
      outputDigest = `blake3-${JSON.parse(result.stdout).outputs[0].output.directory.digest}`;
      envelope = await readEnvelope(envelopePath);
    });

    it('writes a DSSE envelope holding an in-toto SLSA v1 statement of the build', async () => {
      assert.deepEqual(Object.keys(envelope), ['payloadType', 'payload', 'signatures']);
      assert.equal(envelope.payloadType, 'application/vnd.in-toto+json');
      assert.match(envelope.signatures[0]?.keyid ?? '', /^[0-9a-f]{64}$/);
      const statement = payloadOf(envelope);
      assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
      assert.equal(statement.predicateType, 'https://slsa.dev/provenance/v1');
      assert.equal(statement.subject.length, 1);
      assert.equal(statement.subject[0].name, 'nix/store/result');
      assert.equal(statement.subject[0].digest.blake3, Buffer.from(outputDigest.slice(7), 'base64').toString('hex'));
      const nar = execFileSync('nix-store', ['--dump', join(exported, 'result')]);
      assert.equal(statement.subject[0].digest.sha256, execFileSync('sha256sum', { input: nar }).toString().split(' ')[0]);
      const { buildDefinition, runDetails } = statement.predicate;
      assert.equal(buildDefinition.buildType, 'https://kiln.dev/build/v1');
      assert.deepEqual(buildDefinition.externalParameters.outputs, ['nix/store/result']);
      assert.equal(buildDefinition.internalParameters.backend, 'bwrap');
      assert.equal(buildDefinition.internalParameters.builder, bwrap);
      assert.deepEqual(buildDefinition.resolvedDependencies, []);
      assert.match(runDetails.builder.id, /^urn:kiln:builder:.+:bwrap$/);
      assert.match(runDetails.metadata.invocationId, /^blake3-[A-Za-z0-9+/]{43}=#[0-9a-f-]{36}$/);
      assert.ok(Date.parse(runDetails.metadata.startedOn) <= Date.parse(runDetails.metadata.finishedOn));
      assert.match(runDetails.metadata.finishedOn, /Z$/);
      assert.equal(runDetails.byproducts[0].name, 'log');
      assert.equal(runDetails.byproducts[0].digest.sha256, execFileSync('sha256sum', { input: 'built signed\n' }).toString().split(' ')[0]);
    });

    it('verifies against the store, the exported output on disk and the output entry', async () => {
      const store = await runKiln(['provenance', 'verify', envelopePath, '--key', `${key}.pub`], env);
      assert.equal(store.status, 0, store.stderr);
      assert.match(store.stdout, /^verified: signed by key [0-9a-f]{64}$/m);
      assert.match(store.stdout, /^subject nix\/store\/result: matches the store$/m);
      const disk = await runKiln(['provenance', 'verify', envelopePath, '--key', `${key}.pub`, '--subject', join(exported, 'result')], env);
      assert.equal(disk.status, 0, disk.stderr);
      assert.match(disk.stdout, /subject nix\/store\/result: matches .*exported\/result/);
      const entry = await runKiln(['provenance', 'verify', envelopePath, '--key', `${key}.pub`, '--subject', outputDigest], env);
      assert.equal(entry.status, 0, entry.stderr);
    });

    it('verifies with openssl pkeyutl over the PAE bytes (a verifier that is not ours)', { skip: skipOpenssl ?? false }, async () => {
      const pae = join(work, 'envelope.pae');
      const sig = join(work, 'envelope.sig');
      await fs.writeFile(pae, preAuthEncoding(envelope.payloadType, Buffer.from(envelope.payload, 'base64')));
      await fs.writeFile(sig, Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64'));
      const ok = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', `${key}.pub`, '-rawin', '-in', pae, '-sigfile', sig], {
        encoding: 'utf8',
      });
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /Signature Verified Successfully/);
      const wrong = spawnSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', `${otherKey}.pub`, '-rawin', '-in', pae, '-sigfile', sig],
        {
          encoding: 'utf8',
        },
      );
      assert.notEqual(wrong.status, 0);
    });

    it('fails with the reason: tampered payload, wrong key, swapped subject, truncated envelope, wrong payload type', async () => {
      const write = async (name: string, text: string) => {
        const path = join(work, name);
        await fs.writeFile(path, text);
        return path;
      };
      const verify = (path: string, ...extra: string[]) => runKiln(['provenance', 'verify', path, '--key', `${key}.pub`, ...extra], env);

      const statement = payloadOf(envelope);
      statement.predicate.runDetails.builder.id = 'https://evil.example/builder';
      const tampered = await write(
        'tampered.json',
        JSON.stringify({ ...envelope, payload: Buffer.from(JSON.stringify(statement)).toString('base64') }),
      );
      const t = await verify(tampered);
      assert.equal(t.status, 1);
      assert.match(
        t.stderr,
        /^error: verification failed: the signature does not verify with key [0-9a-f]{64}: the payload, its type or the signature was altered$/m,
      );

      const w = await runKiln(['provenance', 'verify', envelopePath, '--key', `${otherKey}.pub`], env);
      assert.equal(w.status, 1);
      assert.match(w.stderr, /^error: verification failed: signed by key [0-9a-f]{64}, not by the given key [0-9a-f]{64}$/m);

      // a subject swapped for another build's output digests (not re-signed): the signature breaks
      const other = await runKiln(
        ['build', await deterministic('other'), '--builder', bwrap, '--json', '--export', join(work, 'other')],
        env,
      );
      assert.equal(other.status, 0, other.stderr);
      const swappedStatement = payloadOf(envelope);
      swappedStatement.subject[0].digest.blake3 = Buffer.from(
        JSON.parse(other.stdout).outputs[0].output.directory.digest,
        'base64',
      ).toString('hex');
      const swapped = await write(
        'swapped.json',
        JSON.stringify({ ...envelope, payload: Buffer.from(JSON.stringify(swappedStatement)).toString('base64') }),
      );
      const s = await verify(swapped);
      assert.equal(s.status, 1);
      assert.match(s.stderr, /error: verification failed: the signature does not verify/);
      // the genuine envelope presented for the other build's output
      const o = await verify(envelopePath, '--subject', join(work, 'other/result'));
      assert.equal(o.status, 1);
      assert.match(
        o.stderr,
        /^error: verification failed: .*other\/result \(blake3:[0-9a-f]{64} sha256:[0-9a-f]{64}\) matches no subject of the statement \(nix\/store\/result\)$/m,
      );

      const text = await fs.readFile(envelopePath, 'utf8');
      const truncated = await write('truncated.json', text.slice(0, Math.floor(text.length / 2)));
      const c = await verify(truncated);
      assert.equal(c.status, 1);
      assert.match(c.stderr, /^error: verification failed: invalid DSSE envelope: not valid JSON \(truncated or corrupted\?\)/m);

      const retyped = await write('retyped.json', JSON.stringify({ ...envelope, payloadType: 'application/json' }));
      const r = await verify(retyped);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /payload type is "application\/json", expected "application\/vnd.in-toto\+json"/);

      // usage: no key, a private key, an unreadable envelope
      assert.equal((await runKiln(['provenance', 'verify', envelopePath], env)).status, 2);
      const priv = await runKiln(['provenance', 'verify', envelopePath, '--key', key], env);
      assert.equal(priv.status, 2);
      assert.match(priv.stderr, /is a private key; pass the public key/);
      assert.equal((await verify(join(work, 'missing.json'))).status, 2);
    });

    it('lists the stored provenance per output (by digest or path), shows it, and verifies it by digest', async () => {
      const list = await runKiln(['provenance', 'list', outputDigest, join(exported, 'result')], env);
      assert.equal(list.status, 0, list.stderr);
      const lines = list.stdout.trim().split('\n');
      assert.match(lines[0] ?? '', /^blake3-\S+ \(blake3:[0-9a-f]{64} sha256:[0-9a-f]{64}\): 1 statement$/);
      const stored = /^ {2}(blake3-\S+) provenance by urn:kiln:builder:\S+ \(bwrap\) at \S+Z keyid=[0-9a-f]{64}$/.exec(lines[1] ?? '');
      assert.ok(stored, list.stdout);
      assert.match(lines[2] ?? '', /exported\/result .*: 1 statement$/);
      const json = await runKiln(['provenance', 'list', outputDigest, '--json'], env);
      assert.equal(JSON.parse(json.stdout)[0].envelopes[0].envelope, stored[1]);
      const show = await runKiln(['provenance', 'show', stored[1] as string], env);
      assert.deepEqual(JSON.parse(show.stdout), envelope);
      const byDigest = await runKiln(['provenance', 'verify', stored[1] as string, '--key', `${key}.pub`], env);
      assert.equal(byDigest.status, 0, byDigest.stderr);
      const none = await runKiln(['provenance', 'list', join(work, 'other/result')], env);
      assert.match(none.stdout, /: 0 statements$/m);
    });
  });

  it('--provenance and --check-statement need a key; --check-builder needs --check', async () => {
    const env = await freshEnv();
    const req = await deterministic('usage');
    for (const [extra, message] of [
      [['--provenance', join(work, 'x.json')], /--provenance needs --sign-key/],
      [['--check-builder', bwrap], /--check-builder needs --check/],
      [['--check', '--check-statement', join(work, 'x.json')], /--check-statement needs --check and --sign-key/],
      [['--sign-key', `${key}.pub`], /is not a PEM private key/],
    ] as const) {
      const result = await runKiln(['build', req, '--builder', bwrap, ...extra], env);
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, message);
    }
  });

  it('--check catches a non-deterministic build and lists the differing files with a diff', async () => {
    const env = await freshEnv();
    const req = await request(
      'mkdir -p $out/share; echo stable > $out/share/same; printf "line one\\nrandom %s\\nline three\\n" "$(od -An -tx1 -N8 /dev/urandom | tr -d " \\n")" > $out/share/stamp; head -c 32 /dev/urandom > $out/noise.bin',
    );
    const result = await runKiln(['build', req, '--builder', bwrap, '--check', '--sign-key', key], env);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /^kiln: check: building again to compare the outputs$/m);
    assert.match(result.stderr, /^error: not reproducible: 2 paths differ between 1st \(bwrap\) and 2nd \(bwrap\):$/m);
    assert.match(
      result.stderr,
      /^ {2}nix\/store\/result\/noise\.bin\n {4}1st \(bwrap\): file size=32 blake3-\S+\n {4}2nd \(bwrap\): file size=32 blake3-\S+$/m,
    );
    assert.match(
      result.stderr,
      /^ {2}nix\/store\/result\/share\/stamp\n {4}1st \(bwrap\): file size=\d+ blake3-\S+\n {4}2nd \(bwrap\): file size=\d+ blake3-\S+\n {6} {2}line one\n {6}- random [0-9a-f]{16}\n {6}\+ random [0-9a-f]{16}\n {6} {2}line three$/m,
    );
    assert.doesNotMatch(result.stderr, /share\/same/);
    assert.doesNotMatch(result.stderr, /reproduced statement/);
    // the first build's provenance was still signed and stored
    assert.match(result.stderr, /^kiln: provenance blake3-\S+ signed by key/m);
  });

  it('--check passes a deterministic build on bwrap against runc and signs that it reproduced on both', {
    skip: skipRunc ?? false,
  }, async () => {
    const env = await freshEnv();
    const statementPath = join(work, 'reproduced.json');
    const req = await deterministic('reproducible');
    const result = await runKiln(
      [
        'build',
        req,
        '--builder',
        bwrap,
        '--check',
        '--check-builder',
        runc,
        '--sign-key',
        key,
        '--check-statement',
        statementPath,
        '--json',
      ],
      env,
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /^kiln: build blake3-\S+ on oci\(runc\)$/m);
    assert.match(
      result.stderr,
      /^kiln: check: reproduced: the outputs of bwrap \(invocation \S+\) and oci\(runc\) \(invocation \S+\) are identical$/m,
    );
    const statement = payloadOf(await readEnvelope(statementPath));
    assert.equal(statement.predicateType, 'https://kiln.dev/reproduced/v1');
    assert.deepEqual(
      statement.predicate.runs.map((r: { backend: string }) => r.backend),
      ['bwrap', 'oci(runc)'],
    );
    assert.equal(statement.subject[0].name, 'nix/store/result');
    const verify = await runKiln(['provenance', 'verify', statementPath, '--key', `${key}.pub`], env);
    assert.equal(verify.status, 0, verify.stderr);
    assert.match(
      verify.stdout,
      /statement: reproduced, build type https:\/\/kiln\.dev\/build\/v1, by urn:kiln:builder:\S+:bwrap \(bwrap, .*\) and urn:kiln:builder:\S+:oci\(runc\) \(oci\(runc\)/,
    );
    const digest = `blake3-${JSON.parse(result.stdout).outputs[0].output.directory.digest}`;
    const list = await runKiln(['provenance', 'list', digest], env);
    assert.match(list.stdout, /: 2 statements$/m);
    assert.match(list.stdout, / reproduced by /);
  });

  it('result cache turned on for a store: every build on it uses the cache until it is turned off', async () => {
    const env = await freshEnv();
    const req = await deterministic('store-cached');
    const built = (stderr: string) => /^kiln: built in /m.test(stderr);
    const status = await runKiln(['provenance', 'cache', 'status'], env);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /: off$/m);
    const on = await runKiln(['provenance', 'cache', 'on'], env);
    assert.equal(on.status, 0, on.stderr);
    assert.match(on.stdout, /: on$/m);
    assert.ok(built((await runKiln(['build', req, '--builder', bwrap], env)).stderr), 'a miss builds');
    const hit = await runKiln(['build', req, '--builder', bwrap], env);
    assert.equal(hit.status, 0, hit.stderr);
    assert.ok(!built(hit.stderr), 'a hit without --cache: the store has its cache on');
    assert.match(hit.stderr, / cached: /);
    assert.ok(built((await runKiln(['build', req, '--builder', bwrap, '--rebuild'], env)).stderr), '--rebuild bypasses it');
    assert.equal((await runKiln(['provenance', 'cache', 'off'], env)).status, 0);
    assert.ok(built((await runKiln(['build', req, '--builder', bwrap], env)).stderr), 'off again: builds');
    assert.equal((await runKiln(['provenance', 'cache', 'sideways'], env)).status, 2);
  });

  it('result cache: a miss builds and records, a hit returns at once, --rebuild builds again, a plain build ignores it', async () => {
    const env = await freshEnv();
    const req = await deterministic('cached');
    const built = (stderr: string) => /^kiln: built in /m.test(stderr);
    const cacheHit =
      /^kiln: build blake3-\S+ cached: built on bwrap at \S+ \(invocation [0-9a-f-]{36}\); not building \(--rebuild to build anyway\)$/m;
    const first = await runKiln(['build', req, '--builder', bwrap, '--cache', '--json'], env);
    assert.equal(first.status, 0, first.stderr);
    assert.ok(built(first.stderr));
    const second = await runKiln(['build', req, '--builder', bwrap, '--cache', '--json'], env);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, cacheHit);
    assert.ok(!built(second.stderr), 'a hit does not build');
    assert.equal(second.stdout, first.stdout, 'the same BuildResponse');
    const rebuild = await runKiln(['build', req, '--builder', bwrap, '--cache', '--rebuild', '--json'], env);
    assert.equal(rebuild.status, 0, rebuild.stderr);
    assert.ok(built(rebuild.stderr));
    assert.equal(rebuild.stdout, first.stdout);
    const plain = await runKiln(['build', req, '--builder', bwrap], env);
    assert.ok(built(plain.stderr), 'without --cache, no lookup');
    // a different request is a miss
    const other = await runKiln(['build', await deterministic('cached-2'), '--builder', bwrap, '--cache'], env);
    assert.ok(built(other.stderr));
    // a hit with --sign-key states the recorded build
    const envelopePath = join(work, 'cached.json');
    const signed = await runKiln(['build', req, '--builder', bwrap, '--cache', '--sign-key', key, '--provenance', envelopePath], env);
    assert.equal(signed.status, 0, signed.stderr);
    assert.match(signed.stderr, cacheHit);
    const statement = payloadOf(await readEnvelope(envelopePath));
    const invocation = (cacheHit.exec(signed.stderr)?.[0] ?? '').match(/invocation ([0-9a-f-]{36})/)?.[1];
    assert.ok(statement.predicate.runDetails.metadata.invocationId.endsWith(`#${invocation}`));
    // the records live beside the store, one per request digest
    const records = await fs.readdir(join(env.KILN_HOME, 'store/provenance/results'));
    assert.equal(records.length, 2);
  });
});

const vectors = loadVectors();
const skipNix = vectorsSkipReason(vectors) ?? skip;

describe('kiln nix build provenance', { skip: skipNix ?? false }, () => {
  let work: string;
  let env: Record<string, string>;
  let drvDir: string;
  let key: string;
  const busybox = vectors?.busybox.storePath as string;
  before(async () => {
    work = await fs.mkdtemp('/var/tmp/kiln-cli-nix-provenance-');
    await fs.chmod(work, 0o755);
    drvDir = join(work, 'drv');
    await fs.mkdir(drvDir);
    env = { KILN_NIX_STORE_DIR: await makeVectorStore(join(work, 'nix-store'), vectors as never) };
    key = join(work, 'signing.key');
    assert.equal((await runKiln(['key', 'generate', '--out', key])).status, 0);
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });
  const home = async () => ({ ...env, KILN_HOME: await fs.mkdtemp(join(work, 'home-')) });
  const derivation = async (name: string, script: string) => {
    const { drvPath, drv } = await writeTestDerivation(drvDir, {
      name,
      builder: `${busybox}/bin/busybox`,
      args: ['sh', '-c', script],
      inputSrcs: [busybox],
    });
    return { file: join(drvDir, drvPath.slice('/nix/store/'.length)), drvPath, out: drv.outputs.get('out')?.path as string };
  };
  const bwrap = () => `bwrap://${join(work, 'sandbox')}`;
  const payload = async (path: string) =>
    JSON.parse(Buffer.from(JSON.parse(await fs.readFile(path, 'utf8')).payload, 'base64').toString('utf8'));

  it('signs the provenance of a derivation (its path and ATerm digest, subjects by store path) and checks it on runc', {
    skip: skipRunc ?? false,
  }, async () => {
    const e = await home();
    const { file, drvPath, out } = await derivation('prov', 'mkdir $out; echo reproducible > $out/file');
    const provenance = join(work, 'nix.provenance.json');
    const reproduced = join(work, 'nix.reproduced.json');
    const runc = `oci://?runtime=runc&sandbox-dir=${join(work, 'sandbox')}`;
    const result = await runKiln(
      [
        'nix',
        'build',
        file,
        '--builder',
        bwrap(),
        '--sign-key',
        key,
        '--provenance',
        provenance,
        '--check',
        '--check-builder',
        runc,
        '--check-statement',
        reproduced,
      ],
      e,
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${out}\n`);
    const statement = await payload(provenance);
    assert.equal(statement.predicate.buildDefinition.buildType, 'https://kiln.dev/nix-build/v1');
    const aterm = await fs.readFile(file);
    assert.deepEqual(statement.predicate.buildDefinition.externalParameters, {
      derivation: { path: drvPath, digest: { sha256: createHash('sha256').update(aterm).digest('hex') } },
    });
    assert.deepEqual(
      statement.subject.map((s: { name: string }) => s.name),
      [out],
    );
    // the subject's sha256 is the NAR hash Kiln recorded for the store path
    const pathInfo = await runKiln(['nix', 'path-info', out, '--json'], e);
    assert.equal(pathInfo.status, 0, pathInfo.stderr);
    const narHash = parseNixHash(JSON.parse(pathInfo.stdout).narHash);
    assert.equal(statement.subject[0].digest.sha256, Buffer.from(narHash.digest).toString('hex'));
    const verify = await runKiln(['provenance', 'verify', provenance, '--key', `${key}.pub`], e);
    assert.equal(verify.status, 0, verify.stderr);
    assert.match(verify.stdout, new RegExp(`subject ${out}: matches the store`));
    const repro = await payload(reproduced);
    assert.equal(repro.predicateType, 'https://kiln.dev/reproduced/v1');
    assert.deepEqual(
      repro.predicate.runs.map((r: { backend: string }) => r.backend),
      ['bwrap', 'oci(runc)'],
    );

    // built already: nothing to sign without --check; --check rebuilds and signs the rebuild's provenance
    const again = await runKiln(['nix', 'build', file, '--builder', bwrap(), '--sign-key', key], e);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /was not built now \(its outputs are held\): no provenance signed; --check rebuilds it/);
    const recheck = await runKiln(['nix', 'build', file, '--builder', bwrap(), '--sign-key', key, '--check'], e);
    assert.equal(recheck.status, 0, recheck.stderr);
    assert.match(recheck.stderr, /^kiln: check: reproduced: the rebuild on bwrap \(invocation \S+\) gave the recorded outputs$/m);
    assert.match(recheck.stderr, /^kiln: provenance blake3-\S+ signed by key/m);
  });

  it('--check catches a non-deterministic derivation, the store path named', async () => {
    const e = await home();
    const { file, out } = await derivation('noisy', 'mkdir $out; echo same > $out/same; od -An -tx1 -N8 /dev/urandom > $out/noise');
    const result = await runKiln(['nix', 'build', file, '--builder', bwrap(), '--check'], e);
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`^error: not reproducible: 1 path differs between 1st \\(bwrap\\) and 2nd \\(bwrap\\):\\n {2}${out}/noise\\n`, 'm'),
    );
    assert.match(result.stderr, /^ {6}- {2}[0-9a-f ]+\n {6}\+ {2}[0-9a-f ]+$/m);
  });
});
