/**
 * The local Nix store, read-only: `.drv` files and input sources come from
 * it, nothing is ever written to it. A source is imported into the castore
 * and gets a path info whose NAR hash Kiln computes itself; its references
 * are known without Nix when the path proves them (a `source` path of a
 * NAR hash without references, as `builtins.path` makes, or a `text` path
 * without references, as `builtins.toFile` makes), and are otherwise read
 * from Nix's database through `nix-store --dump-db`, whose recorded NAR
 * hash must then match the contents (else `SOURCE_CORRUPT`).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type BlobService, type DirectoryService, type FileDigestCache, importPath } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import {
  contentAddress,
  DEFAULT_STORE_DIR,
  formatNixHash,
  makeFixedOutputStorePath,
  nixHash,
  nixHashEquals,
  parseAbsoluteStorePath,
  parseNixHash,
  parseStorePathBaseName,
  type StorePath,
} from '../nix/index.js';
import { hashFileNode, narDigestOfNode } from './castore-to-nar.js';
import { NixBridgeError } from './errors.js';
import type { PathInfo } from './path-info.js';

export interface LocalNixStoreOptions {
  /** The store directory paths are named in; default `/nix/store`. */
  storeDir?: string;
  /** Where that directory's contents actually are on this host; default `storeDir`. */
  realStoreDir?: string;
  /** Directories searched for `<hash>-<name>.drv` files before the store (e.g. where a given DRV file lies). */
  drvSearchDirs?: readonly string[];
  /** The `nix-store` program; default `nix-store` on PATH. */
  nixStoreProgram?: string;
}

/** What Nix's database records about a valid path. */
export interface NixDbPathInfo {
  readonly path: string;
  readonly narHash: string;
  readonly narSize: number;
  readonly deriver?: string;
  readonly references: readonly string[];
}

export interface ImportSourceOptions extends AbortOptions {
  blobService: BlobService;
  directoryService: DirectoryService;
  fileDigestCache?: FileDigestCache;
}

export class LocalNixStore {
  readonly storeDir: string;
  readonly realStoreDir: string;
  readonly #searchDirs: string[];
  readonly #program: string;

  constructor(options: LocalNixStoreOptions = {}) {
    this.storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
    this.realStoreDir = options.realStoreDir ?? this.storeDir;
    this.#searchDirs = [...(options.drvSearchDirs ?? [])];
    this.#program = options.nixStoreProgram ?? 'nix-store';
  }

  /**
   * The `.drv` path a DRV argument names: a path in the store directory, or
   * a file named `<hash>-<name>.drv` elsewhere (whose directory is then also
   * searched for the input derivations).
   */
  resolveDerivationArgument(arg: string): string {
    if (arg.startsWith(`${this.storeDir}/`)) return parseAbsoluteStorePath(arg, this.storeDir).toAbsolute(this.storeDir);
    const path = parseStorePathBaseName(basename(arg));
    const dir = dirname(resolve(arg));
    if (!this.#searchDirs.includes(dir)) this.#searchDirs.unshift(dir);
    return path.toAbsolute(this.storeDir);
  }

  /** The bytes of a `.drv` file; `NOT_FOUND` when no search directory and not the store holds it. */
  async readDerivationFile(drvPath: string): Promise<Uint8Array> {
    const base = parseAbsoluteStorePath(drvPath, this.storeDir).baseName;
    const candidates = [...this.#searchDirs.map((dir) => join(dir, base)), join(this.realStoreDir, base)];
    for (const file of candidates) {
      try {
        return await readFile(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    throw new NixBridgeError('NOT_FOUND', `derivation ${drvPath} not found (looked in ${candidates.map((c) => dirname(c)).join(', ')})`, {
      details: { path: drvPath },
    });
  }

  /** Whether the store directory holds something at `path` (valid in Nix's database or not). */
  exists(path: string): boolean {
    return existsSync(join(this.realStoreDir, parseAbsoluteStorePath(path, this.storeDir).baseName));
  }

  /** Nix's database records of `paths` (`nix-store --dump-db`); a path Nix does not hold as valid is absent. */
  async queryNixDb(paths: readonly string[], options: AbortOptions = {}): Promise<Map<string, NixDbPathInfo>> {
    const result = new Map<string, NixDbPathInfo>();
    for (const path of paths) {
      // One path per call: nix-store fails the whole call when any path is invalid.
      const text = await this.#run(['--dump-db', path], options).catch((error: Error & { stderr?: string }) => {
        if (/is not valid/.test(error.stderr ?? '')) return undefined;
        throw error;
      });
      if (text === undefined) continue;
      const lines = text.split('\n');
      const count = Number(lines[4]);
      result.set(path, {
        path: lines[0] as string,
        narHash: lines[1] as string,
        narSize: Number(lines[2]),
        ...(lines[3] ? { deriver: lines[3] } : {}),
        references: lines.slice(5, 5 + count),
      });
    }
    return result;
  }

  #run(args: string[], options: AbortOptions): Promise<string> {
    return new Promise((done, fail) => {
      execFile(
        this.#program,
        args,
        { maxBuffer: 64 * 1024 * 1024, ...(options.signal ? { signal: options.signal } : {}) },
        (error, stdout, stderr) => {
          if (error) fail(Object.assign(error, { stderr }));
          else done(stdout);
        },
      );
    });
  }

  /**
   * Imports the source at `path` into the castore and returns its path
   * info (see the module comment). Its references are not imported.
   */
  async importSource(path: string, options: ImportSourceOptions): Promise<PathInfo> {
    const storePath = parseAbsoluteStorePath(path, this.storeDir);
    const real = join(this.realStoreDir, storePath.baseName);
    if (!existsSync(real)) {
      throw new NixBridgeError('SOURCE_MISSING', `input source ${path} is not in the Nix store (${this.realStoreDir})`, {
        details: { path },
      });
    }
    const { node } = await importPath(real, {
      blobService: options.blobService,
      directoryService: options.directoryService,
      ...(options.fileDigestCache ? { fileDigestCache: options.fileDigestCache } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const digest = await narDigestOfNode(node, options, options);
    const base = { storePath, node, narHash: digest.narHash, narSize: digest.narSize };
    const asSource = contentAddress('nar', digest.narHash);
    if (makeFixedOutputStorePath(storePath.name, asSource, { storeDir: this.storeDir }).equals(storePath)) {
      return { ...base, references: [], ca: asSource };
    }
    if (node.type === 'file') {
      const textHash = await hashFileNode(node, options, 'sha256', options);
      if (this.#isTextPath(storePath, textHash.digest)) {
        return { ...base, references: [], ca: contentAddress('text', textHash) };
      }
    }
    let records: Map<string, NixDbPathInfo>;
    try {
      records = await this.queryNixDb([path], options);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NixBridgeError(
          'SOURCE_MISSING',
          `cannot tell the references of input source ${path}: its path does not prove them and ${this.#program} is not installed`,
          { cause: error, details: { path } },
        );
      }
      throw new NixBridgeError('SOURCE_MISSING', `cannot query Nix's database about ${path}: ${(error as Error).message.trim()}`, {
        cause: error,
        details: { path },
      });
    }
    const record = records.get(path);
    if (!record) {
      throw new NixBridgeError('SOURCE_MISSING', `input source ${path} exists but is not a valid path in Nix's database`, {
        details: { path },
      });
    }
    const recorded = parseNixHash(record.narHash, 'sha256');
    if (!nixHashEquals(recorded, digest.narHash) || record.narSize !== digest.narSize) {
      throw new NixBridgeError(
        'SOURCE_CORRUPT',
        `input source ${path} has changed: Nix recorded ${formatNixHash(recorded, 'nixbase32')} (${record.narSize} bytes), its contents hash to ${formatNixHash(digest.narHash, 'nixbase32')} (${digest.narSize} bytes)`,
        { details: { path } },
      );
    }
    return {
      ...base,
      references: [...record.references].sort(),
      ...(record.deriver ? { deriver: record.deriver } : {}),
    };
  }

  #isTextPath(path: StorePath, digest: Uint8Array): boolean {
    return makeFixedOutputStorePath(path.name, contentAddress('text', nixHash('sha256', digest)), { storeDir: this.storeDir }).equals(path);
  }
}
