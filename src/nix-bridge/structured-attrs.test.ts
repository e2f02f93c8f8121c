import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseDerivation } from '../nix/index.js';
import { derivationEnvironment } from './derivation-environment.js';
import { dumpStructuredAttrs, formatFloat, parseStructuredAttrs, structuredAttrsShell } from './structured-attrs.js';

/** A derivation instantiated and built by Nix 2.8 (probe.nix), with the files and env its builder saw. */
const DIR = join(import.meta.dirname, '../../test/fixtures/nix-bridge/structured-attrs');
const DRV = '/nix/store/90h6rag55xr0phbd3v1jayf9lw12f2wa-probe-sa3.drv';

describe('structured attrs as Nix 2.8 writes them', () => {
  const drv = parseDerivation(readFileSync(join(DIR, '90h6rag55xr0phbd3v1jayf9lw12f2wa-probe-sa3.drv')));
  const result = derivationEnvironment(drv, { drvPath: DRV, buildCores: 2 });

  it('.attrs.json is byte-identical to the one Nix 2.8 wrote', () => {
    assert.equal(Buffer.from(result.files.get('.attrs.json') as Uint8Array).toString(), readFileSync(join(DIR, 'attrs.json'), 'utf8'));
  });

  it('.attrs.sh is byte-identical to the one Nix 2.8 wrote (int casts, skipped floats and nested values included)', () => {
    assert.equal(Buffer.from(result.files.get('.attrs.sh') as Uint8Array).toString(), readFileSync(join(DIR, 'attrs.sh'), 'utf8'));
  });

  it('the environment is the one the builder saw (but SHLVL, which its shell set)', () => {
    const expected = readFileSync(join(DIR, 'env'), 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('SHLVL='));
    const actual = [...result.env].map(([k, v]) => `${k}=${Buffer.from(v).toString()}`).sort();
    assert.deepEqual(actual, expected);
  });
});

describe('nlohmann::json rules', () => {
  it('formats floats as nlohmann does', () => {
    for (const [value, text] of [
      [1.5, '1.5'],
      [2, '2.0'],
      [1e20, '1e+20'],
      [1e-5, '1e-05'],
      [1e-4, '0.0001'],
      [0.1, '0.1'],
      [123456789012345, '123456789012345.0'],
      [1234567890123456, '1.234567890123456e+15'],
      [-0.5, '-0.5'],
      [0, '0.0'],
      [1.5e300, '1.5e+300'],
    ] as const) {
      assert.equal(formatFloat(value), text, String(value));
    }
  });

  it('keeps integers and floats apart, sorts keys by bytes, lets a later duplicate win, escapes as nlohmann', () => {
    const value = parseStructuredAttrs('{"b":2.0,"a":[1,-2,18446744073709551615,18446744073709551616],"é":"\\u0001\\/x","a":true}');
    assert.equal(dumpStructuredAttrs(value), '{"a":true,"b":2.0,"é":"\\u0001/x"}');
    assert.equal(
      dumpStructuredAttrs(parseStructuredAttrs('[18446744073709551615,18446744073709551616]')),
      '[18446744073709551615,1.8446744073709552e+19]',
    );
  });

  it('rejects what nlohmann rejects', () => {
    for (const bad of ['{', '{"a":1,}', '[1 2]', '"\\ud800"', '01', '1.', '{"a":1} x', '"\t"', 'nul']) {
      assert.throws(() => parseStructuredAttrs(bad), /cannot process __json/, bad);
    }
  });

  it('writes bash declarations only for names bash accepts and values it can hold', () => {
    const sh = structuredAttrsShell(parseStructuredAttrs('{"a-b":1,"x":[1,[2]],"y":{"k":{}},"z":[],"q":"it\'s"}'));
    assert.equal(sh, "declare q='it'\\''s'\ndeclare -a z=()\n");
  });
});
