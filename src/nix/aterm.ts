/**
 * The ATerm form of a derivation (`.drv` files), read and written byte-exactly.
 *
 * ```
 * Derive([outputs],[inputDrvs],[inputSrcs],"system","builder",[args],[env])
 * output   = ("name","path","hashAlgo","hash")     hashAlgo [r:|text:]algo and lower-case hex hash, or both ""
 * inputDrv = ("path",["output",…])
 * env      = ("key","value")
 * ```
 *
 * No whitespace anywhere and no trailing newline. Strings are bytes between
 * double quotes with exactly five escapes: `\\` `\"` `\n` `\r` `\t`; any
 * other byte (raw newlines and non-UTF-8 included) stands for itself.
 *
 * Reading rejects unknown escapes, unterminated strings, duplicate output
 * names, inputDrvs, inputDrv output names, inputSrcs and env keys, and any
 * byte after the closing `)`; errors are `INVALID_DERIVATION` with the byte
 * `offset` in their details. The result is then validated
 * (`validateDerivation`). Input order is not checked.
 *
 * Writing sorts every map and set (see derivation.ts) and escapes every
 * string, so a derivation written by Nix reads and writes back to the same
 * bytes.
 */
import { toHex } from '../common/encoding.js';
import { formatMethodAlgo, parseMethodAlgo } from './content-address.js';
import {
  compareNixStrings,
  type Derivation,
  type DerivationOutput,
  type ValidateDerivationOptions,
  validateDerivation,
} from './derivation.js';
import { NixFormatError } from './errors.js';
import { hashDigestLength } from './hash.js';
import { nixStringFromBytes, nixStringToBytes } from './nix-string.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_LIST = 0x5b;
const CLOSE_LIST = 0x5d;
const OPEN_TUPLE = 0x28;
const CLOSE_TUPLE = 0x29;
const UNESCAPE: Readonly<Record<number, number>> = { 92: 0x5c, 34: 0x22, 110: 0x0a, 114: 0x0d, 116: 0x09 };
const PREFIX = 'Derive(';

class AtermReader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  fail(reason: string, offset: number = this.pos): never {
    throw new NixFormatError('INVALID_DERIVATION', `invalid derivation: ${reason} at byte ${offset}`, { details: { offset } });
  }

  private describe(offset: number): string {
    return offset < this.bytes.length ? JSON.stringify(String.fromCharCode(this.bytes[offset])) : 'the end';
  }

  expect(byte: number): void {
    if (this.bytes[this.pos] !== byte) this.fail(`expected ${JSON.stringify(String.fromCharCode(byte))}, found ${this.describe(this.pos)}`);
    this.pos++;
  }

  expectLiteral(literal: string): void {
    for (let i = 0; i < literal.length; i++) {
      if (this.bytes[this.pos + i] !== literal.charCodeAt(i)) this.fail(`expected ${JSON.stringify(literal)}`, this.pos + i);
    }
    this.pos += literal.length;
  }

  /** A quoted string's unescaped bytes. */
  bytesString(): Uint8Array {
    const b = this.bytes;
    const start = this.pos;
    this.expect(QUOTE);
    let i = this.pos;
    while (i < b.length && b[i] !== QUOTE && b[i] !== BACKSLASH) i++;
    if (b[i] === QUOTE) {
      this.pos = i + 1;
      return b.subarray(start + 1, i);
    }
    const out: number[] = Array.from(b.subarray(start + 1, i));
    for (;;) {
      if (i >= b.length) this.fail('unterminated string', start);
      const c = b[i];
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        const unescaped = UNESCAPE[b[i + 1]];
        if (unescaped === undefined) {
          if (i + 1 >= b.length) this.fail('unterminated string', start);
          this.fail(`invalid escape "\\${String.fromCharCode(b[i + 1])}"`, i);
        }
        out.push(unescaped);
        i += 2;
      } else {
        out.push(c);
        i++;
      }
    }
    this.pos = i + 1;
    return Uint8Array.from(out);
  }

  string(): string {
    return nixStringFromBytes(this.bytesString());
  }

  /** `[` item (`,` item)* `]`, calling `item` with the offset of each element. */
  list(item: (offset: number) => void): void {
    this.expect(OPEN_LIST);
    if (this.bytes[this.pos] === CLOSE_LIST) {
      this.pos++;
      return;
    }
    for (;;) {
      item(this.pos);
      if (this.bytes[this.pos] === COMMA) {
        this.pos++;
        continue;
      }
      this.expect(CLOSE_LIST);
      return;
    }
  }

  comma(): void {
    this.expect(COMMA);
  }

  atEnd(): boolean {
    return this.pos === this.bytes.length;
  }
}

function parseOutput(r: AtermReader, hashAlgo: string, hash: Uint8Array, path: string, offset: number): DerivationOutput {
  if (hashAlgo === '' && hash.length === 0) return { path };
  if (hashAlgo === '') r.fail('output hash without hashAlgo', offset);
  if (hash.length === 0) r.fail(`floating or impure output (hashAlgo ${JSON.stringify(hashAlgo)} without hash) is not supported`, offset);
  let parsed: ReturnType<typeof parseMethodAlgo>;
  try {
    parsed = parseMethodAlgo(hashAlgo);
  } catch (error) {
    r.fail((error as Error).message, offset);
  }
  const hex = Buffer.from(hash).toString('latin1');
  if (hex.length !== 2 * hashDigestLength(parsed.algo) || !/^[0-9a-f]*$/.test(hex)) {
    r.fail(`output hash ${JSON.stringify(hex)} is not ${hashDigestLength(parsed.algo)} bytes of lower-case hex`, offset);
  }
  return { path, ca: { method: parsed.method, hash: { algo: parsed.algo, digest: new Uint8Array(Buffer.from(hex, 'hex')) } } };
}

/**
 * Parses a `.drv` file's bytes. Throws `INVALID_DERIVATION` with the byte
 * offset for syntax errors and duplicates, and with the field for rule
 * violations (see `validateDerivation`; output paths are required unless
 * `requireOutputPaths` is false).
 */
export function parseDerivation(bytes: Uint8Array, options: ValidateDerivationOptions = {}): Derivation {
  const r = new AtermReader(bytes);
  r.expectLiteral(PREFIX);
  const drv: Derivation = {
    outputs: new Map(),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    system: '',
    builder: '',
    args: [],
    env: new Map(),
  };
  r.list((offset) => {
    r.expect(OPEN_TUPLE);
    const name = r.string();
    r.comma();
    const path = r.string();
    r.comma();
    const hashAlgo = r.string();
    r.comma();
    const hash = r.bytesString();
    r.expect(CLOSE_TUPLE);
    if (drv.outputs.has(name)) r.fail(`duplicate output ${JSON.stringify(name)}`, offset);
    drv.outputs.set(name, parseOutput(r, hashAlgo, hash, path, offset));
  });
  r.comma();
  r.list((offset) => {
    r.expect(OPEN_TUPLE);
    const path = r.string();
    r.comma();
    const names = new Set<string>();
    r.list((nameOffset) => {
      const name = r.string();
      if (names.has(name)) r.fail(`duplicate output name ${JSON.stringify(name)} of input derivation ${JSON.stringify(path)}`, nameOffset);
      names.add(name);
    });
    r.expect(CLOSE_TUPLE);
    if (drv.inputDrvs.has(path)) r.fail(`duplicate input derivation ${JSON.stringify(path)}`, offset);
    drv.inputDrvs.set(path, names);
  });
  r.comma();
  r.list((offset) => {
    const path = r.string();
    if (drv.inputSrcs.has(path)) r.fail(`duplicate input source ${JSON.stringify(path)}`, offset);
    drv.inputSrcs.add(path);
  });
  r.comma();
  drv.system = r.string();
  r.comma();
  drv.builder = r.string();
  r.comma();
  r.list(() => {
    drv.args.push(r.string());
  });
  r.comma();
  r.list((offset) => {
    r.expect(OPEN_TUPLE);
    const key = r.string();
    r.comma();
    const value = r.string();
    r.expect(CLOSE_TUPLE);
    if (drv.env.has(key)) r.fail(`duplicate env key ${JSON.stringify(key)}`, offset);
    drv.env.set(key, value);
  });
  r.expect(CLOSE_TUPLE);
  if (!r.atEnd()) r.fail('trailing bytes after the derivation');
  validateDerivation(drv, options);
  return drv;
}

/** `"…"` with the five escapes. */
function quote(value: string, field: string): string {
  if (/[\ud800-\udfff]/.test(value)) {
    try {
      nixStringToBytes(value);
    } catch (error) {
      throw new NixFormatError('INVALID_DERIVATION', `invalid derivation: ${field}: ${(error as Error).message}`, {
        cause: error,
        details: { field },
      });
    }
  }
  return `"${value.replace(/[\\"\n\r\t]/g, escapeChar)}"`;
}

function escapeChar(c: string): string {
  switch (c) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default:
      return `\\${c}`;
  }
}

function quotedList(values: Iterable<string>, field: string): string {
  return `[${Array.from(values, (v) => quote(v, field)).join(',')}]`;
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The ATerm text in Nix-string form. `inputDrvs` replaces the input
 * derivations (hashDerivationModulo writes hashes there): entries are written
 * in the given order.
 */
export function atermText(drv: Derivation, inputDrvs?: readonly (readonly [string, Iterable<string>])[]): string {
  const outputs = [...drv.outputs]
    .sort(([a], [b]) => compareNixStrings(a, b))
    .map(([name, output]) => {
      const ca = output.ca;
      const hashAlgo = ca ? formatMethodAlgo(ca.method, ca.hash.algo) : '';
      const hash = ca ? toHex(ca.hash.digest) : '';
      return `(${quote(name, 'outputs')},${quote(output.path, `outputs.${name}.path`)},${quote(hashAlgo, 'hashAlgo')},${quote(hash, 'hash')})`;
    });
  const drvEntries = inputDrvs ?? [...drv.inputDrvs].sort(([a], [b]) => byString(a, b));
  const inputs = drvEntries.map(
    ([path, names]) => `(${quote(path, 'inputDrvs')},${quotedList([...names].sort(compareNixStrings), 'inputDrvs')})`,
  );
  const env = [...drv.env]
    .sort(([a], [b]) => compareNixStrings(a, b))
    .map(([key, value]) => `(${quote(key, 'env')},${quote(value, `env[${JSON.stringify(key)}]`)})`);
  return (
    `${PREFIX}[${outputs.join(',')}],[${inputs.join(',')}],${quotedList([...drv.inputSrcs].sort(byString), 'inputSrcs')},` +
    `${quote(drv.system, 'system')},${quote(drv.builder, 'builder')},${quotedList(drv.args, 'args')},[${env.join(',')}])`
  );
}

/** The `.drv` bytes: sorted, escaped, no trailing newline. Does not validate; see `validateDerivation`. */
export function writeDerivation(drv: Derivation): Uint8Array {
  return nixStringToBytes(atermText(drv));
}
