/**
 * Conversion between generated `snix.build.v1` messages and the validated
 * BuildRequest / BuildResponse domain types, the proto3 JSON forms, and the
 * request digest. The only build domain file that imports src/gen.
 */
import { create, fromJsonString, toBinary, toJsonString } from '@bufbuild/protobuf';
import { B3Digest, entryFromMessage, entryToMessage, type Node, parsePathComponent } from '../castore/index.js';
import {
  BuildRequest_AdditionalFileSchema,
  BuildRequest_BuildConstraintsSchema,
  BuildRequest_EnvVarSchema,
  type BuildRequest as BuildRequestMessage,
  BuildRequestSchema,
  BuildResponse_OutputSchema,
  type BuildResponse as BuildResponseMessage,
  BuildResponseSchema,
} from '../gen/snix/build/v1/build_pb.js';
import type { Entry as EntryMessage } from '../gen/snix/castore/v1/castore_pb.js';
import type { BuildRequest } from './build-request.js';
import { validateBuildRequest } from './build-request.js';
import { BuildError, invalidRequest } from './errors.js';

export type { BuildRequestMessage, BuildResponseMessage };

/** One collected output: the node and the indexes of the needles found in it. */
export interface BuildOutput {
  readonly node: Node;
  /** Ascending indexes into `refscanNeedles`. */
  readonly needles: readonly number[];
}

/** What a successful build yields: one output per requested output, in request order. */
export interface BuildResponse {
  readonly outputs: readonly BuildOutput[];
}

/** Validates a received message into a BuildRequest; errors name the field. */
export function buildRequestFromMessage(message: BuildRequestMessage): BuildRequest {
  const inputs = message.inputs.map((entry, i) => {
    try {
      const { name, node } = entryFromMessage(entry);
      return { name: parsePathComponent(name), node };
    } catch (error) {
      throw new BuildError('INVALID_REQUEST', `invalid build request: inputs[${i}] ${(error as Error).message}`, {
        cause: error,
        details: { field: `inputs[${i}]` },
      });
    }
  });
  const c = message.constraints;
  let minMemory = 0;
  if (c) {
    minMemory = Number(c.minMemory);
    if (!Number.isSafeInteger(minMemory)) throw invalidRequest('constraints.min_memory', `${c.minMemory} is too large`);
  }
  return validateBuildRequest({
    inputs,
    commandArgs: [...message.commandArgs],
    workingDir: message.workingDir,
    scratchPaths: [...message.scratchPaths],
    inputsDir: message.inputsDir,
    outputs: [...message.outputs],
    environmentVars: message.environmentVars.map((e) => ({ key: e.key, value: e.value })),
    ...(c
      ? {
          constraints: {
            system: c.system,
            minMemory,
            availableRoPaths: [...c.availableRoPaths],
            networkAccess: c.networkAccess,
            provideBinSh: c.provideBinSh,
          },
        }
      : {}),
    additionalFiles: message.additionalFiles.map((f) => ({ path: f.path, contents: f.contents })),
    refscanNeedles: [...message.refscanNeedles],
  });
}

export function buildRequestToMessage(request: BuildRequest): BuildRequestMessage {
  const c = request.constraints;
  return create(BuildRequestSchema, {
    inputs: request.inputs.map((i) => entryToMessage(i.name, i.node)),
    commandArgs: [...request.commandArgs],
    workingDir: request.workingDir,
    scratchPaths: [...request.scratchPaths],
    inputsDir: request.inputsDir,
    outputs: [...request.outputs],
    environmentVars: request.environmentVars.map((e) => create(BuildRequest_EnvVarSchema, { key: e.key, value: e.value })),
    ...(c
      ? {
          constraints: create(BuildRequest_BuildConstraintsSchema, {
            system: c.system,
            minMemory: BigInt(c.minMemory),
            availableRoPaths: [...c.availableRoPaths],
            networkAccess: c.networkAccess,
            provideBinSh: c.provideBinSh,
          }),
        }
      : {}),
    additionalFiles: request.additionalFiles.map((f) => create(BuildRequest_AdditionalFileSchema, { path: f.path, contents: f.contents })),
    refscanNeedles: [...request.refscanNeedles],
  });
}

/** Parses and validates the proto3 JSON form (what `kiln build REQUEST.json` reads). */
export function buildRequestFromJson(json: string): BuildRequest {
  let message: BuildRequestMessage;
  try {
    message = fromJsonString(BuildRequestSchema, json);
  } catch (error) {
    throw new BuildError('INVALID_REQUEST', `invalid build request JSON: ${(error as Error).message}`, { cause: error });
  }
  return buildRequestFromMessage(message);
}

export function buildRequestToJson(request: BuildRequest): string {
  return toJsonString(BuildRequestSchema, buildRequestToMessage(request), { prettySpaces: 2 });
}

/** The build's identity: BLAKE3 over the canonical encoding of the validated request. */
export function buildRequestDigest(request: BuildRequest): B3Digest {
  return B3Digest.of(toBinary(BuildRequestSchema, buildRequestToMessage(request), { writeUnknownFields: false }));
}

export function buildResponseToMessage(response: BuildResponse): BuildResponseMessage {
  return create(BuildResponseSchema, {
    outputs: response.outputs.map((o) =>
      create(BuildResponse_OutputSchema, { output: entryToMessage(new Uint8Array(0), o.node), needles: o.needles.map((n) => BigInt(n)) }),
    ),
  });
}

/** Validates a response: every output present and anonymous. */
export function buildResponseFromMessage(message: BuildResponseMessage): BuildResponse {
  return {
    outputs: message.outputs.map((o, i) => {
      if (!o.output) throw new BuildError('BUILDER_FAILED', `invalid build response: output entry ${i} missing`);
      let node: Node;
      try {
        node = entryFromMessage(o.output as EntryMessage, { anonymous: true }).node;
      } catch (error) {
        throw new BuildError('BUILDER_FAILED', `invalid build response: output entry ${i} invalid: ${(error as Error).message}`, {
          cause: error,
        });
      }
      return { node, needles: [...new Set(o.needles.map((n) => Number(n)))].sort((a, b) => a - b) };
    }),
  };
}

export function buildResponseToJson(response: BuildResponse): string {
  return toJsonString(BuildResponseSchema, buildResponseToMessage(response));
}
