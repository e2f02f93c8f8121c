/**
 * Structured attributes (`__structuredAttrs = true`, the `__json` env entry)
 * as Nix 2.8 hands them to a builder: `.attrs.json` (the attributes plus
 * `outputs`, re-serialized by nlohmann::json) and `.attrs.sh` (bash
 * `declare` statements for the simple ones). Nix parses `__json` with
 * nlohmann::json and writes it back with `dump()`, so the bytes a builder
 * sees follow nlohmann's rules, not JavaScript's: integers and floats stay
 * apart (`2` vs `2.0`), object keys are sorted by bytes (a later duplicate
 * wins), floats print as nlohmann prints them (`1e+20`, `1e-05`), and
 * numbers in `.attrs.sh` go through `float` and `int` casts (so 1e11 prints
 * as 1215752192). This module reproduces those rules.
 */
import { NixBridgeError } from './errors.js';

/** A JSON value as nlohmann::json holds it. */
export type AttrValue =
  | { readonly type: 'null' }
  | { readonly type: 'boolean'; readonly value: boolean }
  /** number_integer or number_unsigned: what parses without fraction or exponent and fits 64 bits. */
  | { readonly type: 'integer'; readonly value: bigint }
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'array'; readonly items: AttrValue[] }
  /** Keys in byte order, unique. */
  | { readonly type: 'object'; readonly entries: Map<string, AttrValue> };

const INT64_MIN = -(2n ** 63n);
const LITERALS: readonly [string, AttrValue][] = [
  ['true', { type: 'boolean', value: true }],
  ['false', { type: 'boolean', value: false }],
  ['null', { type: 'null' }],
];
const UINT64_MAX = 2n ** 64n - 1n;

function syntaxError(text: string, offset: number, what: string): NixBridgeError {
  return new NixBridgeError('INVALID_DERIVATION', `cannot process __json attribute: ${what} at offset ${offset}`, {
    details: { field: '__json', offset, length: text.length },
  });
}

/** Parses `__json` as nlohmann::json::parse does (RFC 8259, nothing after the value). */
export function parseStructuredAttrs(text: string): AttrValue {
  let pos = 0;
  const ws = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t' || text[pos] === '\n' || text[pos] === '\r')) pos++;
  };
  const expect = (literal: string) => {
    if (text.startsWith(literal, pos)) pos += literal.length;
    else throw syntaxError(text, pos, `expected ${JSON.stringify(literal)}`);
  };
  const parseString = (): string => {
    expect('"');
    let out = '';
    let start = pos;
    for (;;) {
      if (pos >= text.length) throw syntaxError(text, pos, 'unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) throw syntaxError(text, pos, 'control character in string');
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = text.charCodeAt(pos + 1);
        if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) throw syntaxError(text, pos, 'invalid UTF-8 in string');
        pos += 2;
        continue;
      }
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(start, pos);
      const e = text[pos + 1];
      pos += 2;
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'u') {
        const unit = (at: number) => {
          const hex = text.slice(at, at + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw syntaxError(text, at, 'invalid \\u escape');
          return Number.parseInt(hex, 16);
        };
        const hi = unit(pos);
        pos += 4;
        if (hi >= 0xd800 && hi <= 0xdbff) {
          if (text[pos] !== '\\' || text[pos + 1] !== 'u') throw syntaxError(text, pos, 'surrogate without its pair');
          const lo = unit(pos + 2);
          if (lo < 0xdc00 || lo > 0xdfff) throw syntaxError(text, pos, 'surrogate without its pair');
          pos += 6;
          out += String.fromCharCode(hi, lo);
        } else if (hi >= 0xdc00 && hi <= 0xdfff) {
          throw syntaxError(text, pos - 6, 'surrogate without its pair');
        } else {
          out += String.fromCharCode(hi);
        }
      } else throw syntaxError(text, pos - 1, 'invalid escape');
      start = pos;
    }
  };
  const parseNumber = (): AttrValue => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(pos, pos + 400));
    if (!match || match[0] === '-' || match[0] === '') throw syntaxError(text, pos, 'invalid number');
    const literal = match[0];
    pos += literal.length;
    if (match[2] === undefined && match[3] === undefined) {
      const value = BigInt(literal);
      if (value >= INT64_MIN && value <= UINT64_MAX) return { type: 'integer', value };
    }
    return { type: 'float', value: Number(literal) };
  };
  const parseValue = (depth: number): AttrValue => {
    if (depth > 512) throw syntaxError(text, pos, 'nesting too deep');
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const entries: [string, AttrValue][] = [];
      ws();
      if (text[pos] === '}') {
        pos++;
        return { type: 'object', entries: new Map() };
      }
      for (;;) {
        ws();
        const key = parseString();
        ws();
        expect(':');
        entries.push([key, parseValue(depth + 1)]);
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        expect('}');
        return { type: 'object', entries: sortedEntries(entries) };
      }
    }
    if (c === '[') {
      pos++;
      const items: AttrValue[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return { type: 'array', items };
      }
      for (;;) {
        items.push(parseValue(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        expect(']');
        return { type: 'array', items };
      }
    }
    if (c === '"') return { type: 'string', value: parseString() };
    for (const [literal, value] of LITERALS) {
      if (c === literal[0]) {
        expect(literal);
        return value;
      }
    }
    return parseNumber();
  };
  const value = parseValue(0);
  ws();
  if (pos !== text.length) throw syntaxError(text, pos, 'trailing characters');
  return value;
}

/** Keys sorted by UTF-8 bytes (std::map<std::string>); a later duplicate replaces an earlier one. */
function sortedEntries(entries: Iterable<[string, AttrValue]>): Map<string, AttrValue> {
  const byKey = new Map<string, AttrValue>();
  for (const [key, value] of entries) byKey.set(key, value);
  return new Map([...byKey].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
}

/** An object value with `key` set (replacing any previous value), keys kept in byte order. */
export function withAttr(object: AttrValue, key: string, value: AttrValue): AttrValue {
  if (object.type !== 'object') throw new TypeError('not an object');
  return { type: 'object', entries: sortedEntries([...object.entries, [key, value]]) };
}

/** `json.dump()`: compact, keys in byte order, strings escaped as nlohmann escapes them. */
export function dumpStructuredAttrs(value: AttrValue): string {
  switch (value.type) {
    case 'null':
      return 'null';
    case 'boolean':
      return value.value ? 'true' : 'false';
    case 'integer':
      return value.value.toString();
    case 'float':
      return formatFloat(value.value);
    case 'string':
      return dumpString(value.value);
    case 'array':
      return `[${value.items.map(dumpStructuredAttrs).join(',')}]`;
    case 'object':
      return `{${[...value.entries].map(([k, v]) => `${dumpString(k)}:${dumpStructuredAttrs(v)}`).join(',')}}`;
  }
}

function dumpString(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * A double as nlohmann's `to_chars` writes it: the shortest digits that
 * read back, in fixed notation when the decimal point falls within
 * (-4, 15] (`100.0`, `1.5`, `0.001`), else `d.ddde±XX`.
 */
export function formatFloat(x: number): string {
  if (!Number.isFinite(x)) return 'null';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, exp] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const k = digits.length;
  const n = Number(exp) + 1;
  let body: string;
  if (k <= n && n <= 15) body = `${digits}${'0'.repeat(n - k)}.0`;
  else if (0 < n && n <= 15) body = `${digits.slice(0, n)}.${digits.slice(n)}`;
  else if (-4 < n && n <= 0) body = `0.${'0'.repeat(-n)}${digits}`;
  else {
    const e = n - 1;
    const abs = Math.abs(e);
    body = `${digits[0]}${k > 1 ? `.${digits.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${abs < 10 ? `0${abs}` : abs}`;
  }
  return sign + body;
}

const SH_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function shellEscape(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

/** C's `(int)` of a double on x86-64: truncation, INT_MIN when out of range. */
function doubleToInt(x: number): number {
  const t = Math.trunc(x);
  return Number.isFinite(t) && t >= -(2 ** 31) && t < 2 ** 31 ? t : -(2 ** 31);
}

/** Nix's `handleSimpleType`: the shell form of a string, integral number, null or boolean. */
function simpleShellValue(value: AttrValue): string | undefined {
  switch (value.type) {
    case 'string':
      return shellEscape(value.value);
    case 'integer':
      // value.get<float>() of an integer is integral; get<int>() keeps the low 32 bits.
      return BigInt.asIntN(32, value.value).toString();
    case 'float': {
      const f = Math.fround(value.value);
      return Math.ceil(f) === f ? String(doubleToInt(value.value)) : undefined;
    }
    case 'null':
      return "''";
    case 'boolean':
      return value.value ? '1' : '';
    default:
      return undefined;
  }
}

/** `.attrs.sh`: `declare` lines for the top-level attributes bash can hold, as Nix 2.8 writes them. */
export function structuredAttrsShell(attrs: AttrValue): string {
  if (attrs.type !== 'object') return '';
  let out = '';
  for (const [key, value] of attrs.entries) {
    if (!SH_VAR_NAME.test(key)) continue;
    const simple = simpleShellValue(value);
    if (simple !== undefined) {
      out += `declare ${key}=${simple}\n`;
    } else if (value.type === 'array') {
      const items = value.items.map(simpleShellValue);
      if (items.every((s) => s !== undefined)) out += `declare -a ${key}=(${items.map((s) => `${s} `).join('')})\n`;
    } else if (value.type === 'object') {
      const items = [...value.entries].map(([k, v]) => [k, simpleShellValue(v)] as const);
      if (items.every(([, s]) => s !== undefined))
        out += `declare -A ${key}=(${items.map(([k, s]) => `[${shellEscape(k)}]=${s} `).join('')})\n`;
    }
  }
  return out;
}

/** The value of an attribute as a list of strings, as Nix's `getStringsAttr` reads it in structured mode. */
export function stringsAttr(attrs: AttrValue, name: string): string[] | undefined {
  if (attrs.type !== 'object') return undefined;
  const value = attrs.entries.get(name);
  if (value === undefined) return undefined;
  if (value.type !== 'array' || value.items.some((i) => i.type !== 'string')) {
    throw new NixBridgeError('INVALID_DERIVATION', `attribute '${name}' of the derivation must be a list of strings`, {
      details: { field: name },
    });
  }
  return value.items.map((i) => (i as { value: string }).value);
}
