/** `kiln build REQUEST.json`: run a BuildRequest on a builder, streaming its logs. */
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  type BuildInput,
  type BuildRequest,
  buildRequestFromJson,
  buildResponseToJson,
  buildServiceFromUrl,
  validateBuildRequest,
} from '../../build/index.js';
import { importPath, materialize, parsePathComponent } from '../../castore/index.js';
import { compareBytes } from '../../common/encoding.js';
import { type Command, expectPositionals, STORE_HELP, STORE_OPTION, stringOption, UsageError } from '../command.js';
import { formatNode } from '../format.js';
import { withStore } from '../store.js';

export const DEFAULT_BUILDER_URL = 'bwrap://';

export const build: Command = {
  path: ['build'],
  summary: 'run a BuildRequest (snix.build.v1 proto3 JSON) in a sandbox',
  help: `usage: kiln build REQUEST.json [--builder URL] [--store URL] [--input NAME=PATH]... [--json] [--export DIR]

Runs the build REQUEST.json describes (the proto3 JSON of snix.build.v1.BuildRequest)
and ingests its outputs into the store. Build logs stream live to stderr.
Exit status: 0 built, 1 the build ran and failed (exit code, signal, missing
output), 2 invalid request or usage.

options:
  --builder URL      where to build: bwrap:// (default), dummy://
${STORE_HELP}
  --input NAME=PATH  import PATH and add it as input NAME (repeatable; kept sorted)
  --json             print the BuildResponse as proto3 JSON on stdout
  --export DIR       also write each output to DIR/<basename of its path>`,
  options: {
    ...STORE_OPTION,
    builder: { type: 'string' },
    input: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    export: { type: 'string' },
  },
  async run(args, io) {
    const [requestPath] = expectPositionals(this, args, ['REQUEST.json']) as [string];
    let text: string;
    try {
      text = await readFile(requestPath, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${requestPath}: ${(error as Error).message}`);
    }
    const parsed = buildRequestFromJson(text);
    return withStore(args, io.env, async (store) => {
      const extraInputs: BuildInput[] = [];
      for (const spec of (args.values.input as string[] | undefined) ?? []) {
        const at = spec.indexOf('=');
        if (at <= 0) throw new UsageError(`invalid --input ${JSON.stringify(spec)}: expected NAME=PATH`);
        const name = parsePathComponent(spec.slice(0, at));
        const { node } = await importPath(resolve(spec.slice(at + 1)), {
          blobService: store.blobService,
          directoryService: store.directoryService,
          signal: io.signal,
        });
        extraInputs.push({ name, node });
      }
      const request: BuildRequest = validateBuildRequest({
        ...parsed,
        inputs: [...parsed.inputs, ...extraInputs].sort((a, b) => compareBytes(a.name, b.name)),
      });
      const builder = await buildServiceFromUrl(stringOption(args, 'builder') ?? DEFAULT_BUILDER_URL, store);
      try {
        for await (const event of builder.build(request, { signal: io.signal })) {
          if (event.type === 'log') io.stderr.write(event.data);
          else if (event.type === 'failed') {
            io.stderr.write(`error: build failed (${event.reason}): ${event.message}\n`);
            return 1;
          } else if (event.type === 'finished') {
            const exportDir = stringOption(args, 'export');
            if (exportDir) {
              await mkdir(resolve(exportDir), { recursive: true });
              for (const [i, output] of event.response.outputs.entries()) {
                await materialize(output.node, join(resolve(exportDir), basename(request.outputs[i] as string)), {
                  blobService: store.blobService,
                  directoryService: store.directoryService,
                  signal: io.signal,
                });
              }
            }
            if (args.values.json) io.stdout.write(`${buildResponseToJson(event.response)}\n`);
            else
              for (const [i, output] of event.response.outputs.entries())
                io.stdout.write(`${request.outputs[i]}: ${formatNode(output.node)}\n`);
            return 0;
          }
        }
        throw new Error('the builder ended without a result');
      } finally {
        await builder.close();
      }
    });
  },
};
