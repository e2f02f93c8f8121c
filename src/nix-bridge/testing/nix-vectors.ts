/**
 * The Nix 2.8 vectors (`/work/shared/vectors/nix`, or `$KILN_NIX_VECTORS`):
 * their derivations, expected outputs, and a fake Nix store holding the one
 * input source they share (busybox, imported with `builtins.path`), made from
 * the host's `/bin/busybox` when its sha256 is the recorded one.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export const VECTORS_DIR = process.env.KILN_NIX_VECTORS ?? '/work/shared/vectors/nix';

export interface VectorOutput {
  path: string;
  narHash: string;
  narHashBase32: string;
  narSize: number;
  references: string[];
}

export interface Vector {
  name: string;
  drvPath: string;
  drvFile: string;
  outputs: Record<string, VectorOutput>;
}

export interface Vectors {
  busybox: { storePath: string; narHash: string; narSize: number; binarySha256: string };
  derivations: Vector[];
}

export function loadVectors(): Vectors | undefined {
  const file = join(VECTORS_DIR, 'vectors.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Vectors) : undefined;
}

/** Why the vectors cannot be built here, or undefined. */
export function vectorsSkipReason(vectors: Vectors | undefined): string | undefined {
  if (!vectors) return `no Nix vectors at ${VECTORS_DIR}`;
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  const sha = createHash('sha256').update(readFileSync('/bin/busybox')).digest('hex');
  if (sha !== vectors.busybox.binarySha256) return `/bin/busybox is not the busybox the vectors were made with (sha256 ${sha})`;
  return undefined;
}

/** Writes `<dir>/<busybox store path base name>/bin/busybox`: a store directory holding the vectors' input source. */
export async function makeVectorStore(dir: string, vectors: Vectors): Promise<string> {
  const base = vectors.busybox.storePath.split('/').at(-1) as string;
  await mkdir(join(dir, base, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, base, 'bin', 'busybox'));
  await chmod(join(dir, base, 'bin', 'busybox'), 0o755);
  return dir;
}
