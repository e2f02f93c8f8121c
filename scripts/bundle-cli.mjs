// Bundles the compiled CLI (dist/cli/kiln.js and the command modules it
// loads on demand) into dist/bundle/, one chunk per command plus shared
// chunks. Node 20 spends most of a short command's start-up resolving and
// loading ES modules one file at a time (~140 of them, 66 from
// @bufbuild/protobuf alone); bundled, `kiln castore import` of one file
// takes 0.21–0.22 s instead of 0.33–0.38 s. Packages with native addons
// stay external. A module that locates files next to itself (worker
// scripts, the sandbox's C programs, package.json) keeps doing so: in every
// bundled module from a dist/ directory, `import.meta.url` is rewritten to
// the URL of the file the module came from.
import { readFile, rm } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');

/** @type {import('esbuild').Plugin} */
const ownModuleUrl = {
  name: 'own-module-url',
  setup(build) {
    build.onLoad({ filter: /\/dist\/.*\.js$/ }, async (args) => {
      const contents = await readFile(args.path, 'utf8');
      if (!contents.includes('import.meta.url')) return { contents, loader: 'js' };
      const ownUrl = `new URL(${JSON.stringify(relative(outdir, args.path))}, import.meta.url).href`;
      return { contents: contents.replaceAll('import.meta.url', ownUrl), loader: 'js' };
    });
  },
};

await rm(outdir, { recursive: true, force: true });
await esbuild.build({
  entryPoints: [join(root, 'dist', 'cli', 'kiln.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['lmdb', '@c4312/*', 'blake3-wasm'],
  plugins: [ownModuleUrl],
  logLevel: 'warning',
});
