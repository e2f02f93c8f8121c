/**
 * An optional memo that lets re-imports skip hashing unchanged files: it
 * maps a file's identity (device, inode, size, mtime, ctime, all in ns
 * precision where the OS has it) to the digest its contents had. Stores that
 * persist it (the embedded disk store) make a second import of unchanged data
 * cost only a `stat` per file. A hit is trusted only while the blob is still
 * present in the blob service.
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export interface FileDigestCache {
  /** The digest (32 bytes) recorded for this identity, or undefined. */
  lookup(identity: FileIdentity): Uint8Array | undefined;
  /** Records the digest of a file whose contents were just hashed. */
  record(identity: FileIdentity, digest: Uint8Array): void;
}

/** A stable key for maps and key-value stores. */
export function fileIdentityKey(identity: FileIdentity): string {
  return `${identity.dev}:${identity.ino}:${identity.size}:${identity.mtimeNs}:${identity.ctimeNs}`;
}
