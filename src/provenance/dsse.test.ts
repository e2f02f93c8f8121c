import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { utf8 } from '../common/encoding.js';
import { envelopeFromJson, envelopeToJson, IN_TOTO_PAYLOAD_TYPE, preAuthEncoding, signEnvelope, verifyEnvelope } from './dsse.js';
import { isProvenanceError } from './errors.js';
import { generateSigningKeyPem, signingKeyFromPem, verifyingKeyFromPem } from './keys.js';

const pair = () => {
  const pem = generateSigningKeyPem();
  return { signing: signingKeyFromPem(pem.privateKeyPem), verifying: verifyingKeyFromPem(pem.publicKeyPem), pem };
};
const code = (c: string) => (e: unknown) => isProvenanceError(e) && e.code === c;
const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });
const noOpenssl = openssl.status === 0 && /^OpenSSL 3/.test(openssl.stdout) ? false : 'openssl 3 is not installed';

describe('DSSE', () => {
  it('encodes the PAE exactly as the DSSE protocol test vector', () => {
    const pae = preAuthEncoding('http://example.com/HelloWorld', utf8('hello world'));
    assert.equal(Buffer.from(pae).toString(), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
    // lengths count bytes, not characters
    assert.equal(Buffer.from(preAuthEncoding('t', utf8('é'))).toString(), 'DSSEv1 1 t 2 é');
    assert.equal(Buffer.from(preAuthEncoding('', new Uint8Array())).toString(), 'DSSEv1 0  0 ');
  });

  it('signs and verifies; the envelope JSON has payloadType, base64 payload and keyid/sig', () => {
    const { signing, verifying } = pair();
    const envelope = signEnvelope(utf8('{"a":1}'), signing);
    const json = JSON.parse(envelopeToJson(envelope));
    assert.deepEqual(Object.keys(json), ['payloadType', 'payload', 'signatures']);
    assert.equal(json.payloadType, IN_TOTO_PAYLOAD_TYPE);
    assert.equal(Buffer.from(json.payload, 'base64').toString(), '{"a":1}');
    assert.equal(json.signatures[0].keyid, signing.keyId);
    assert.equal(Buffer.from(json.signatures[0].sig, 'base64').length, 64);
    const verified = verifyEnvelope(envelopeFromJson(envelopeToJson(envelope)), verifying);
    assert.equal(Buffer.from(verified.payload).toString(), '{"a":1}');
    assert.equal(verified.keyId, verifying.keyId);
  });

  it('fails with the reason on a tampered payload, a wrong key, another payload type, a truncated envelope', () => {
    const { signing, verifying } = pair();
    const envelope = signEnvelope(utf8('{"subject":"a"}'), signing);
    const tampered = { ...envelope, payload: Buffer.from('{"subject":"b"}').toString('base64') };
    assert.throws(
      () => verifyEnvelope(tampered, verifying),
      (e: unknown) => code('BAD_SIGNATURE')(e) && /altered/.test((e as Error).message),
    );
    const other = pair();
    assert.throws(
      () => verifyEnvelope(envelope, other.verifying),
      (e: unknown) =>
        code('BAD_SIGNATURE')(e) &&
        (e as Error).message.includes(`signed by key ${signing.keyId}, not by the given key ${other.verifying.keyId}`),
    );
    assert.throws(() => verifyEnvelope({ ...envelope, payloadType: 'text/plain' }, verifying), code('WRONG_PAYLOAD_TYPE'));
    const text = envelopeToJson(envelope);
    for (const cut of [1, 20, text.length - 2]) assert.throws(() => envelopeFromJson(text.slice(0, cut)), code('INVALID_ENVELOPE'));
    assert.throws(() => envelopeFromJson('{"payloadType":"x","payload":"!!","signatures":[{"sig":"AA=="}]}'), code('INVALID_ENVELOPE'));
    assert.throws(() => envelopeFromJson('{"payloadType":"x","payload":"","signatures":[]}'), /signatures is missing or empty/);
    // a signature without keyid is still tried
    const anonymous = { ...envelope, signatures: [{ sig: envelope.signatures[0]!.sig }] };
    assert.ok(verifyEnvelope(anonymous, verifying));
  });

  it('accepts URL-safe base64 (DSSE verifiers accept both alphabets)', () => {
    const { signing, verifying } = pair();
    const envelope = signEnvelope(utf8('\u00ff\u00fe~~~???>>>'), signing);
    const urlSafe = (s: string) => s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    const converted = { ...envelope, payload: urlSafe(envelope.payload), signatures: [{ sig: urlSafe(envelope.signatures[0]!.sig) }] };
    assert.ok(verifyEnvelope(envelopeFromJson(JSON.stringify(converted)), verifying));
  });

  it('refuses keys that are not Ed25519 or not public', () => {
    const { pem } = pair();
    assert.throws(() => verifyingKeyFromPem(pem.privateKeyPem), code('INVALID_KEY'));
    assert.throws(() => signingKeyFromPem(pem.publicKeyPem), code('INVALID_KEY'));
    assert.throws(() => verifyingKeyFromPem('garbage'), code('INVALID_KEY'));
  });

  describe('with openssl, a verifier and signer that is not ours', { skip: noOpenssl }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-dsse-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, data?: string | Uint8Array) => {
      const path = join(dir, name);
      if (data !== undefined) writeFileSync(path, data);
      return path;
    };
    const { signing, pem } = pair();
    file('key.pem', pem.privateKeyPem);
    file('key.pub', pem.publicKeyPem);

    it('openssl pkeyutl verifies our signature over the PAE bytes, and refuses it over other bytes', () => {
      const envelope = signEnvelope(utf8('{"_type":"https://in-toto.io/Statement/v1"}'), signing);
      const pae = preAuthEncoding(envelope.payloadType, Buffer.from(envelope.payload, 'base64'));
      file('pae', pae);
      file('sig', Buffer.from(envelope.signatures[0]!.sig, 'base64'));
      const ok = spawnSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', file('key.pub'), '-rawin', '-in', file('pae'), '-sigfile', file('sig')],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /Signature Verified Successfully/);
      file('pae2', Buffer.concat([Buffer.from(pae), Buffer.from(' ')]));
      const bad = spawnSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', file('key.pub'), '-rawin', '-in', file('pae2'), '-sigfile', file('sig')],
        {
          encoding: 'utf8',
        },
      );
      assert.notEqual(bad.status, 0);
    });

    it('we verify an envelope openssl signed, and our key id is the sha256 of the SPKI DER openssl prints', () => {
      const payload = utf8('{"signed":"by openssl"}');
      file('pae3', preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload));
      const sig = execFileSync('openssl', ['pkeyutl', '-sign', '-inkey', file('key.pem'), '-rawin', '-in', file('pae3')]);
      const envelope = {
        payloadType: IN_TOTO_PAYLOAD_TYPE,
        payload: Buffer.from(payload).toString('base64'),
        signatures: [{ sig: sig.toString('base64') }],
      };
      const verifying = verifyingKeyFromPem(readFileSync(file('key.pub')));
      assert.deepEqual(Buffer.from(verifyEnvelope(envelope, verifying).payload), Buffer.from(payload));
      const der = execFileSync('openssl', ['pkey', '-pubin', '-in', file('key.pub'), '-outform', 'DER']);
      const sha = execFileSync('openssl', ['dgst', '-sha256', '-r'], { input: der }).toString().split(' ')[0];
      assert.equal(verifying.keyId, sha);
    });
  });
});
