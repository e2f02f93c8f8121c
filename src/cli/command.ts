/**
 * The shape of a CLI command and the argument parsing every command shares.
 * Usage mistakes throw UsageError (exit status 2).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { CodedError } from '../common/coded-error.js';

export class UsageError extends CodedError<'USAGE'> {
  override readonly name = 'UsageError';
  constructor(message: string) {
    super('USAGE', message);
  }
}

export interface CommandIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
}

/** What names a command: enough for dispatch and the overview, without loading it. */
export interface CommandSpec {
  /** Words that select the command, e.g. `['castore', 'import']`. */
  readonly path: readonly string[];
  readonly summary: string;
}

/** What a command's module provides (loaded only when the command runs). */
export interface CommandImplementation {
  /** Full help text printed by `--help`. */
  readonly help: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  /** Resolves to the exit status. */
  run(this: Command, args: ParsedArgs, io: CommandIo): Promise<number>;
}

export type Command = CommandSpec & CommandImplementation;

export interface ParsedArgs {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
}

export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: command.options, allowPositionals: true, strict: true });
    return { values: values as ParsedArgs['values'], positionals };
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0]} (see kiln ${command.path.join(' ')} --help)`);
  }
}

/** Exactly `names.length` positionals, named in the error when missing or extra. */
export function expectPositionals(command: Command, args: ParsedArgs, names: readonly string[]): string[] {
  if (args.positionals.length < names.length) {
    throw new UsageError(
      `missing ${names.slice(args.positionals.length).join(' ')} (usage: kiln ${command.path.join(' ')} ${names.join(' ')})`,
    );
  }
  if (args.positionals.length > names.length) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[names.length])}`);
  return args.positionals;
}

export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** The options every store-using command takes. */
export const STORE_OPTION = { store: { type: 'string' } } as const;
export const STORE_HELP =
  '  --store URL   castore to use: a path, file:///path, memory://, grpc+unix:///sock, grpc+http(s)://host:port\n                (default: $KILN_HOME/store, KILN_HOME defaults to ~/.local/share/kiln)';
