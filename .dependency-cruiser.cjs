/**
 * Kiln's layer rules (ARCHITECTURE.md §2.3): common ← castore ← build ←
 * nix-bridge ← provenance ← cli (provenance states the NAR hashes of
 * outputs, so it may use the Nix layers); nix imports only common; only adapters touch src/gen;
 * another layer only through its index; testing kits only from tests.
 */
const layer = (name) => `^src/${name}/`;
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    { name: 'common-is-a-leaf', severity: 'error', from: { path: layer('common') }, to: { path: '^src/(?!common/)' } },
    { name: 'gen-imports-nothing-of-ours', severity: 'error', from: { path: layer('gen') }, to: { path: '^src/(?!gen/)' } },
    {
      name: 'castore-imports-only-common-and-gen',
      severity: 'error',
      from: { path: layer('castore') },
      to: { path: '^src/(?!(castore|common|gen)/)' },
    },
    {
      name: 'build-imports-downward-only',
      severity: 'error',
      from: { path: layer('build') },
      to: { path: '^src/(?!(build|castore|common|gen)/)' },
    },
    { name: 'nix-imports-only-common', severity: 'error', from: { path: layer('nix') }, to: { path: '^src/(?!(nix|common)/)' } },
    {
      name: 'nix-bridge-imports-downward-only',
      severity: 'error',
      from: { path: layer('nix-bridge') },
      to: { path: '^src/(?!(nix-bridge|nix|build|castore|common)/)' },
    },
    {
      name: 'provenance-imports-downward-only',
      severity: 'error',
      from: { path: layer('provenance') },
      to: { path: '^src/(?!(provenance|nix-bridge|nix|build|castore|common|gen)/)' },
    },
    { name: 'nothing-imports-cli', severity: 'error', from: { pathNot: '^src/cli/' }, to: { path: '^src/cli/' } },
    {
      name: 'only-adapters-touch-gen',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/gen/', '^src/[^/]+/proto-convert\\.ts$', '^src/[^/]+/grpc/', '\\.test\\.ts$'] },
      to: { path: '^src/gen/' },
    },
    {
      name: 'other-layers-through-index-only',
      severity: 'error',
      from: { path: '^src/(castore|build|nix|nix-bridge|provenance|cli)/' },
      to: {
        path: '^src/(castore|build|nix|nix-bridge|provenance)/',
        pathNot: ['^src/$1/', '^src/[^/]+/index\\.ts$', '^src/[^/]+/(grpc|testing)/index\\.ts$'],
      },
    },
    {
      name: 'testing-kits-only-from-tests',
      severity: 'error',
      from: { pathNot: ['\\.test\\.ts$', '/testing/', '^bench/', '^test/'] },
      to: { path: '^src/[^/]+/testing/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
