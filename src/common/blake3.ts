/**
 * BLAKE3-256 at native speed (the reference C implementation through N-API),
 * with a WebAssembly fallback used only when the native addon cannot load.
 * Set KILN_BLAKE3=wasm to force the fallback (tests exercise both).
 */
import { createRequire } from 'node:module';

export interface Blake3Hasher {
  update(data: Uint8Array): void;
  /** The 32-byte digest; the hasher must not be used afterwards. */
  digest(): Uint8Array;
}

interface HashModule {
  createHash(): { update(data: Uint8Array): unknown; digest(): Uint8Array };
}

function loadHashModule(): { module: HashModule; name: 'native' | 'wasm' } {
  const require = createRequire(import.meta.url);
  if (process.env.KILN_BLAKE3 !== 'wasm') {
    try {
      return { module: require('@c4312/blake3-native') as HashModule, name: 'native' };
    } catch {
      // fall through to the portable implementation
    }
  }
  return { module: require('blake3-wasm/dist/node/index.js') as HashModule, name: 'wasm' };
}

const loaded = loadHashModule();

/** Which implementation is in use: `native` or `wasm`. */
export const blake3Backend: 'native' | 'wasm' = loaded.name;

export function createBlake3(): Blake3Hasher {
  const hash = loaded.module.createHash();
  return {
    update: (data) => void hash.update(data),
    digest: () => new Uint8Array(hash.digest()),
  };
}

/** One-shot BLAKE3-256 of `data`. */
export function blake3(data: Uint8Array): Uint8Array {
  const hasher = createBlake3();
  hasher.update(data);
  return hasher.digest();
}
