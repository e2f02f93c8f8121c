/**
 * Kiln's command-line interface: the composition root that picks concrete
 * backends. Dispatches `kiln <command…> [options]` to one file per command.
 */

import { type Command, type CommandIo, parseCommandArgs, UsageError } from './command.js';
import { build } from './commands/build.js';
import { castoreExport } from './commands/castore-export.js';
import { castoreImport } from './commands/castore-import.js';
import { castoreLs } from './commands/castore-ls.js';
import { castoreVerify } from './commands/castore-verify.js';
import { keyGenerate } from './commands/key-generate.js';
import { nixBuild } from './commands/nix-build.js';
import { nixExport } from './commands/nix-export.js';
import { nixPathInfo } from './commands/nix-path-info.js';
import { nixShow } from './commands/nix-show.js';
import { provenanceCache } from './commands/provenance-cache.js';
import { provenanceList, provenanceShow } from './commands/provenance-list.js';
import { provenanceVerify } from './commands/provenance-verify.js';
import { serve } from './commands/serve.js';
import { EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, errorLine, exitStatusFor } from './exit-codes.js';

const COMMANDS: readonly Command[] = [
  build,
  castoreImport,
  castoreExport,
  castoreLs,
  castoreVerify,
  serve,
  nixBuild,
  nixShow,
  nixExport,
  nixPathInfo,
  keyGenerate,
  provenanceVerify,
  provenanceList,
  provenanceShow,
  provenanceCache,
];

function overview(prefix: readonly string[] = []): string {
  const lines = COMMANDS.filter((c) => prefix.every((w, i) => c.path[i] === w)).map(
    (c) => `  kiln ${c.path.join(' ').padEnd(18)} ${c.summary}`,
  );
  return `usage: kiln <command> [options]   (kiln <command> --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const words = argv.filter((a) => !a.startsWith('-'));
  const command = [...COMMANDS].sort((a, b) => b.path.length - a.path.length).find((c) => c.path.every((w, i) => argv[i] === w));
  if (!command) {
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

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/main.ts')) {
  // The first SIGINT/SIGTERM aborts the command, which then cleans up (a
  // build's sandbox is killed and removed within about a second); later ones
  // are ignored so a second Ctrl-C cannot leave a sandbox behind.
  const controller = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (controller.signal.aborted) process.stderr.write(`kiln: ${sig} again: still cleaning up\n`);
      else controller.abort(new Error(`received ${sig}`));
    });
  }
  const status = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: controller.signal,
  });
  process.exitCode = status;
}
