/**
 * What Kiln keeps beside a castore for provenance: an index from an
 * artifact digest to the envelopes (castore blobs) that name it, the
 * result cache (request digest → recorded build), and a memo of NAR
 * digests of castore nodes (content never changes, so neither do they).
 *
 * On disk (`FsSidecar`), one file per entry under one directory, each
 * written to `tmp/`, synced and renamed into place, the directory synced
 * after: a crash leaves either the whole entry or none, and nothing ever
 * needs a lock (entries are immutable or replaced whole):
 *
 *   by-subject/<alg>-<hex>/<envelope blake3 hex>   empty marker files
 *   results/<request digest hex>.json              recorded builds
 *   nar-digests/<d|f|x>-<blake3 hex>.json          digest sets
 *
 * The embedded store keeps it in `<store root>/provenance`; a gRPC store's
 * lives locally in `$KILN_HOME/remote-stores/<hash of the URL>/provenance`
 * (the index describes what this machine attested); `memory://` keeps it in
 * memory (`MemorySidecar`).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { B3Digest, kilnHome } from '../castore/index.js';
import type { DigestSet } from './digests.js';
import { ProvenanceError } from './errors.js';
import type { DigestMemo } from './slsa-provenance.js';

export interface Sidecar extends DigestMemo {
  /** Records that the envelope blob `envelope` names artifacts with these digests (`alg-hex` keys). */
  addProvenance(keys: readonly string[], envelope: B3Digest): Promise<void>;
  /** The envelope blobs recorded for a key, in no particular order. */
  listProvenance(key: string): Promise<B3Digest[]>;
  /** The recorded result (JSON text) for a request digest. */
  getResult(requestHex: string): Promise<string | undefined>;
  putResult(requestHex: string, json: string): Promise<void>;
  /** Whether this store has its result cache turned on (off until someone turns it on). */
  resultCacheEnabled(): Promise<boolean>;
  setResultCacheEnabled(enabled: boolean): Promise<void>;
  readonly description: string;
}

/** Index keys of a digest set: `blake3-<hex>`, `sha256-<hex>`. */
export function indexKeys(digests: DigestSet): string[] {
  return Object.entries(digests)
    .filter(([alg, hex]) => /^[a-z0-9_]+$/.test(alg) && /^[0-9a-f]+$/.test(hex))
    .map(([alg, hex]) => `${alg}-${hex}`);
}

const KEY = /^[a-z0-9_]+-[0-9a-f]{16,128}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const MEMO_KEY = /^[dfx]-[0-9a-f]{64}$/;

function checkKey(key: string, pattern: RegExp): string {
  if (!pattern.test(key)) throw new ProvenanceError('INVALID_RECORD', `invalid index key ${JSON.stringify(key)}`);
  return key;
}

export class MemorySidecar implements Sidecar {
  readonly description = 'memory';
  readonly #index = new Map<string, Set<string>>();
  readonly #results = new Map<string, string>();
  readonly #memo = new Map<string, DigestSet>();
  async addProvenance(keys: readonly string[], envelope: B3Digest): Promise<void> {
    for (const key of keys) {
      const set = this.#index.get(checkKey(key, KEY)) ?? new Set();
      set.add(envelope.toHex());
      this.#index.set(key, set);
    }
  }
  async listProvenance(key: string): Promise<B3Digest[]> {
    return [...(this.#index.get(key) ?? [])].map((hex) => B3Digest.fromHex(hex));
  }
  async getResult(requestHex: string): Promise<string | undefined> {
    return this.#results.get(checkKey(requestHex, HEX64));
  }
  async putResult(requestHex: string, json: string): Promise<void> {
    this.#results.set(checkKey(requestHex, HEX64), json);
  }
  #cacheOn = false;
  async resultCacheEnabled(): Promise<boolean> {
    return this.#cacheOn;
  }
  async setResultCacheEnabled(enabled: boolean): Promise<void> {
    this.#cacheOn = enabled;
  }
  async get(key: string): Promise<DigestSet | undefined> {
    return this.#memo.get(key);
  }
  async set(key: string, digests: DigestSet): Promise<void> {
    this.#memo.set(checkKey(key, MEMO_KEY), digests);
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

let tmpCounter = 0;

export class FsSidecar implements Sidecar {
  readonly dir: string;
  readonly description: string;
  #ready: Promise<void> | undefined;

  constructor(dir: string) {
    this.dir = dir;
    this.description = dir;
  }

  /** Creates the layout and sweeps temp files older than an hour (left by killed writers). */
  #init(): Promise<void> {
    this.#ready ??= (async () => {
      for (const sub of ['tmp', 'by-subject', 'results', 'nar-digests']) await mkdir(join(this.dir, sub), { recursive: true });
      const cutoff = Date.now() - 3_600_000;
      for (const name of await readdir(join(this.dir, 'tmp'))) {
        const path = join(this.dir, 'tmp', name);
        const info = await stat(path).catch(() => undefined);
        if (info && info.mtimeMs < cutoff) await rm(path, { force: true });
      }
    })();
    return this.#ready;
  }

  /** Writes `data` at `path` atomically and durably. */
  async #writeAtomic(path: string, data: string): Promise<void> {
    await this.#init();
    const tmp = join(this.dir, 'tmp', `${process.pid}-${++tmpCounter}-${Math.random().toString(36).slice(2, 8)}`);
    const handle = await open(tmp, 'wx', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await mkdir(join(path, '..'), { recursive: true });
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
    await syncDir(join(path, '..'));
  }

  async addProvenance(keys: readonly string[], envelope: B3Digest): Promise<void> {
    for (const key of keys) await this.#writeAtomic(join(this.dir, 'by-subject', checkKey(key, KEY), envelope.toHex()), '');
  }

  async listProvenance(key: string): Promise<B3Digest[]> {
    await this.#init();
    const names = await readdir(join(this.dir, 'by-subject', checkKey(key, KEY))).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    return names.filter((n) => HEX64.test(n)).map((hex) => B3Digest.fromHex(hex));
  }

  async #read(path: string): Promise<string | undefined> {
    await this.#init();
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  getResult(requestHex: string): Promise<string | undefined> {
    return this.#read(join(this.dir, 'results', `${checkKey(requestHex, HEX64)}.json`));
  }

  putResult(requestHex: string, json: string): Promise<void> {
    return this.#writeAtomic(join(this.dir, 'results', `${checkKey(requestHex, HEX64)}.json`), json);
  }

  /** The setting is the file `result-cache-enabled` beside the index. */
  async resultCacheEnabled(): Promise<boolean> {
    return (await this.#read(join(this.dir, 'result-cache-enabled'))) !== undefined;
  }

  async setResultCacheEnabled(enabled: boolean): Promise<void> {
    const path = join(this.dir, 'result-cache-enabled');
    if (enabled) await this.#writeAtomic(path, 'on\n');
    else {
      await rm(path, { force: true });
      await syncDir(this.dir);
    }
  }

  async get(key: string): Promise<DigestSet | undefined> {
    const text = await this.#read(join(this.dir, 'nar-digests', `${checkKey(key, MEMO_KEY)}.json`));
    if (text === undefined) return undefined;
    try {
      const value = JSON.parse(text) as Record<string, unknown>;
      if (Object.values(value).every((v) => typeof v === 'string')) return value as DigestSet;
    } catch {
      // a damaged memo entry only costs recomputing it
    }
    return undefined;
  }

  set(key: string, digests: DigestSet): Promise<void> {
    return this.#writeAtomic(join(this.dir, 'nar-digests', `${checkKey(key, MEMO_KEY)}.json`), JSON.stringify(digests));
  }
}

const memorySidecars = new WeakMap<object, MemorySidecar>();

/**
 * The sidecar of the store at `url` (the same URL forms as `castoreFromUrl`).
 * `memory://` stores get one per `owner` object (pass the opened store), since
 * each opening is a fresh store.
 */
export function sidecarForStore(url: string, owner: object, env: NodeJS.ProcessEnv = process.env): Sidecar {
  if (isAbsolute(url) || url.startsWith('.') || !/^[a-z][a-z0-9+.-]*:/i.test(url)) return new FsSidecar(join(resolve(url), 'provenance'));
  if (url.startsWith('file:')) return new FsSidecar(join(fileURLToPath(url), 'provenance'));
  if (url.startsWith('memory:')) {
    const existing = memorySidecars.get(owner);
    if (existing) return existing;
    const created = new MemorySidecar();
    memorySidecars.set(owner, created);
    return created;
  }
  const parsed = new URL(url);
  const identity = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 32);
  return new FsSidecar(join(kilnHome(env), 'remote-stores', hash, 'provenance'));
}
