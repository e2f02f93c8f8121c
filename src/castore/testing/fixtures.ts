/**
 * Castore test fixtures with their digests hard-coded from the Snix
 * reference (documented size formula), so a suite can never agree with a
 * wrong implementation by recomputing.
 */
import { B3Digest } from '../b3-digest.js';
import { Directory } from '../directory.js';
import { directoryNode, fileNode, symlinkNode } from '../node.js';
import { parsePathComponent } from '../path-component.js';

export const EMPTY_BLOB = new Uint8Array(0);
export const EMPTY_BLOB_DIGEST = B3Digest.fromHex('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
export const HELLOWORLD_BLOB = new TextEncoder().encode('Hello World!');
export const HELLOWORLD_BLOB_DIGEST = B3Digest.parse('blake3-XKeBWty0hOmhNsEe/mnB1TAXbVSbXRjQOOtSgLSzRww=');
/** Bytes 00 01. */
export const BLOB_A = Uint8Array.of(0, 1);
export const BLOB_A_DIGEST = B3Digest.fromHex('7b7015bb92cf0b318037702a6cdd81dee41224f734684c2c122cd6359cb1ee63');
/** Bytes 0..254 repeated 4096 times (1,044,480 bytes). */
export const BLOB_B = (() => {
  const out = new Uint8Array(255 * 4096);
  for (let i = 0; i < out.length; i++) out[i] = i % 255;
  return out;
})();
export const BLOB_B_DIGEST = B3Digest.fromHex('a82c5154a7a0c262c6fdb929a317585646f8fbcf80326d0a7b8747edaf2d99d2');

const name = parsePathComponent;

export const DIRECTORY_A = Directory.EMPTY;
export const DIRECTORY_A_DIGEST = B3Digest.fromHex('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
export const DIRECTORY_WITH_KEEP = Directory.fromEntries([{ name: name('.keep'), node: fileNode(EMPTY_BLOB_DIGEST, 0) }]);
export const DIRECTORY_WITH_KEEP_DIGEST = B3Digest.fromHex('8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e');
export const DIRECTORY_COMPLICATED = Directory.fromEntries([
  { name: name('keep'), node: directoryNode(DIRECTORY_WITH_KEEP_DIGEST, 1) },
  { name: name('.keep'), node: fileNode(EMPTY_BLOB_DIGEST, 0) },
  { name: name('aa'), node: symlinkNode('/nix/store/somewhereelse') },
]);
export const DIRECTORY_COMPLICATED_DIGEST = B3Digest.fromHex('3f951a15afd586fb3121ef4d13d582e811ce0e5a7f21c0497fd87490e9e2355a');
export const DIRECTORY_B = Directory.fromEntries([{ name: name('a'), node: directoryNode(DIRECTORY_A_DIGEST, 0) }]);
export const DIRECTORY_B_DIGEST = B3Digest.fromHex('8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc');
export const DIRECTORY_C = Directory.fromEntries([
  { name: name('a'), node: directoryNode(DIRECTORY_A_DIGEST, 0) },
  { name: name("a'"), node: directoryNode(DIRECTORY_A_DIGEST, 0) },
]);
export const DIRECTORY_C_DIGEST = B3Digest.fromHex('78eb200ae0cc95d4ea954655fbcf91e285013a261310e161927f2401d2bca803');
export const DIRECTORY_D = Directory.fromEntries([
  { name: name('a'), node: directoryNode(DIRECTORY_A_DIGEST, 0) },
  { name: name('b'), node: directoryNode(DIRECTORY_B_DIGEST, 1) },
]);
export const DIRECTORY_D_DIGEST = B3Digest.fromHex('99922a5c1801805287a647af73bca0ed7352a5f7f373e54992795bcc4a235213');
