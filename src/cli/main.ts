/**
 * Kiln's command-line interface: the composition root that picks concrete
 * backends. Dispatches `kiln <command…> [options]` to one file per command.
 */

import type { Command, CommandImplementation, CommandIo, CommandSpec } from './command.js';
import { parseCommandArgs, UsageError } from './command.js';
import { EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, errorLine, exitStatusFor } from './exit-codes.js';

/** A command as the dispatcher knows it: its module is imported only when it runs (start-up loads no layer it does not use). */
interface CommandEntry extends CommandSpec {
  load(): Promise<CommandImplementation>;
}

const COMMANDS: readonly CommandEntry[] = [
  {
    path: ['build'],
    summary: 'run a BuildRequest (snix.build.v1 proto3 JSON) in a sandbox',
    load: async () => (await import('./commands/build.js')).build,
  },
  {
    path: ['castore', 'import'],
    summary: 'import a file or directory tree into the castore',
    load: async () => (await import('./commands/castore-import.js')).castoreImport,
  },
  {
    path: ['castore', 'export'],
    summary: 'write a castore node out as files',
    load: async () => (await import('./commands/castore-export.js')).castoreExport,
  },
  {
    path: ['castore', 'ls'],
    summary: 'list the tree under a castore node',
    load: async () => (await import('./commands/castore-ls.js')).castoreLs,
  },
  {
    path: ['castore', 'verify'],
    summary: 're-hash every object in the store and report corrupt ones',
    load: async () => (await import('./commands/castore-verify.js')).castoreVerify,
  },
  {
    path: ['serve'],
    summary: 'serve the castore and a builder over gRPC (snix.castore.v1, snix.build.v1, kiln.build.v1)',
    load: async () => (await import('./commands/serve.js')).serve,
  },
  {
    path: ['nix', 'build'],
    summary: 'build a Nix derivation (.drv) on a Kiln builder',
    load: async () => (await import('./commands/nix-build.js')).nixBuild,
  },
  {
    path: ['nix', 'show'],
    summary: 'print the BuildRequest a Nix derivation becomes',
    load: async () => (await import('./commands/nix-show.js')).nixShow,
  },
  {
    path: ['nix', 'export'],
    summary: 'write a store path Kiln holds out as files',
    load: async () => (await import('./commands/nix-export.js')).nixExport,
  },
  {
    path: ['nix', 'path-info'],
    summary: "print Kiln's record of a store path",
    load: async () => (await import('./commands/nix-path-info.js')).nixPathInfo,
  },
  {
    path: ['key', 'generate'],
    summary: 'generate an Ed25519 key pair for signing provenance',
    load: async () => (await import('./commands/key-generate.js')).keyGenerate,
  },
  {
    path: ['provenance', 'verify'],
    summary: 'verify a signed provenance envelope and its subjects',
    load: async () => (await import('./commands/provenance-verify.js')).provenanceVerify,
  },
  {
    path: ['provenance', 'list'],
    summary: 'list the signed statements stored for outputs',
    load: async () => (await import('./commands/provenance-list.js')).provenanceList,
  },
  {
    path: ['provenance', 'show'],
    summary: 'print a stored provenance envelope (or its statement)',
    load: async () => (await import('./commands/provenance-list.js')).provenanceShow,
  },
  {
    path: ['provenance', 'cache'],
    summary: "turn a store's result cache on or off, or show it",
    load: async () => (await import('./commands/provenance-cache.js')).provenanceCache,
  },
];

function overview(prefix: readonly string[] = []): string {
  const lines = COMMANDS.filter((c) => prefix.every((w, i) => c.path[i] === w)).map(
    (c) => `  kiln ${c.path.join(' ').padEnd(18)} ${c.summary}`,
  );
  return `usage: kiln <command> [options]   (kiln <command> --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const words = argv.filter((a) => !a.startsWith('-'));
  const entry = [...COMMANDS].sort((a, b) => b.path.length - a.path.length).find((c) => c.path.every((w, i) => argv[i] === w));
  if (!entry) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      io.stdout.write(overview());
      return EXIT_OK;
    }
    const known = COMMANDS.some((c) => c.path[0] === words[0]);
    if (known && (argv.includes('--help') || argv.includes('-h') || argv.length === 1)) {
      io.stdout.write(overview([words[0] as string]));
      return argv.length === 1 ? EXIT_INVALID : EXIT_OK;
    }
    io.stderr.write(`${errorLine(new UsageError(`unknown command ${JSON.stringify(words.join(' '))}`))}\n${overview()}`);
    return EXIT_INVALID;
  }
  const command: Command = { ...(await entry.load()), path: entry.path, summary: entry.summary };
  const rest = argv.slice(command.path.length);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(command.help.endsWith('\n') ? command.help : `${command.help}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(parseCommandArgs(command, rest), io);
  } catch (error) {
    if (io.signal.aborted) {
      io.stderr.write('error: interrupted\n');
      return EXIT_INTERRUPTED;
    }
    io.stderr.write(`${errorLine(error)}\n`);
    if (io.env.KILN_DEBUG && error instanceof Error) io.stderr.write(`${error.stack}\n`);
    return exitStatusFor(error);
  }
}
