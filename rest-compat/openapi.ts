import { z } from 'zod';
import { ERROR_CODES } from '../core/errors.js';
import { describeLimit } from './multipart.js';
import type { RestRoute } from './table.js';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
}

/** A refusal in the envelope (gateway-ota-system-api.rst). */
const errorEnvelope = {
  type: 'object',
  required: ['success', 'error', 'message'],
  properties: {
    success: { const: false },
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CODES) },
        message: { type: 'string' },
        details: { type: 'object' },
      },
    },
    message: { type: 'string' },
  },
};

/** A refusal of a route answering in its own shape (ota-zip-updates.md). */
const plainError = {
  type: 'object',
  required: ['success', 'message', 'error'],
  properties: {
    success: { const: false },
    message: { type: 'string' },
    error: { type: 'string', enum: Object.keys(ERROR_CODES) },
  },
};

function envelope(data: JsonSchema): JsonSchema {
  return {
    type: 'object',
    required: ['data', 'success', 'message'],
    properties: { data, success: { const: true }, message: { type: 'string' } },
  };
}

const json = (schema: unknown) => ({ 'application/json': { schema } });

function operation(route: RestRoute): JsonSchema {
  const { rest, access } = route;
  const parameters: unknown[] = [];
  if (access.gateway) {
    parameters.push({
      name: 'X-Gateway-ID',
      in: 'header',
      required: true,
      schema: { type: 'string' },
      example: 'GW-3920A9',
    });
  }
  for (const name of route.pathParams) {
    parameters.push({ name, in: 'path', required: true, schema: { type: 'string' } });
  }
  let requestBody: unknown;
  if (rest.upload) {
    requestBody = {
      required: true,
      content: { 'multipart/form-data': { schema: schemaOf(rest.upload.form, 'input') } },
    };
  } else if (route.input && route.pathParams.length === 0) {
    const input = schemaOf(route.input, 'input');
    if (rest.method === 'get') {
      const props = (input.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((input.required as string[] | undefined) ?? []);
      for (const [name, schema] of Object.entries(props)) {
        parameters.push({ name, in: 'query', required: required.has(name), schema });
      }
    } else {
      requestBody = { required: true, content: json(input) };
    }
  }

  const output = route.output ? schemaOf(route.output, 'output') : {};
  const refusal = rest.reply.kind === 'plain' ? plainError : errorEnvelope;
  const responses: Record<number, { description: string; content: unknown }> = {
    200: {
      description: 'Success',
      content:
        rest.reply.kind === 'envelope'
          ? json(envelope(output))
          : rest.reply.kind === 'plain'
            ? json(output)
            : { [rest.reply.contentType]: { schema: { type: 'string', format: 'binary' } } },
    },
    400: { description: 'Invalid input (the field is named)', content: json(refusal) },
  };
  if (access.role) {
    responses[401] = { description: 'Missing, expired or invalid token', content: json(refusal) };
    // A write authenticated by the cookie alone must also come from this origin (CSRF_REJECTED).
    const forbidden = rest.method === 'post' ? ', or a cross-origin cookie write' : '';
    responses[403] = { description: `Role or gateway not allowed${forbidden}`, content: json(refusal) };
  }
  if (access.gateway) responses[404] = { description: 'Unknown gateway', content: json(refusal) };
  if (rest.reply.kind === 'plain' && rest.reply.notFound !== undefined) {
    responses[404] = {
      description: `Not found: ${JSON.stringify(rest.reply.notFound)} (or an unknown gateway)`,
      content: json({ anyOf: [output, refusal] }),
    };
  }
  if (rest.upload) {
    const limit = rest.upload.maxBytes;
    responses[413] = {
      description: `File larger than ${limit ? describeLimit(limit) : 'GANTRY_MAX_UPLOAD_BYTES'}`,
      content: json(refusal),
    };
  }
  for (const [status, description] of Object.entries(rest.refusals ?? {})) {
    responses[Number(status)] = { description, content: json(refusal) };
  }

  const role = access.role ? `Requires role: ${access.role}.` : 'Public.';
  return {
    tags: [rest.tag],
    summary: rest.summary,
    description: rest.description ? `${role} ${rest.description}` : role,
    'x-gantry-role': access.role,
    ...(access.role ? { security: [{ bearerAuth: [] }, { cookieAuth: [] }] } : {}),
    parameters,
    ...(requestBody ? { requestBody } : {}),
    responses,
  };
}

/**
 * The OpenAPI 3.1 document of every REST route, generated from the route table (the procedures'
 * metadata) and the very zod schemas the procedures validate with (zod 4's own JSON Schema output;
 * 3.1 uses JSON Schema).
 */
export function buildOpenApi(routes: readonly RestRoute[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    paths[route.openApiPath] ??= {};
    paths[route.openApiPath]![route.rest.method] = operation(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Gantry OTA & System API',
      version: '1.0.0',
      description:
        'OTA update management for industrial gateways. Every /api/v1 response is the envelope {data, success, message}; errors carry {success: false, error: {code, message}}. The ZIP routes (ota-zip-updates.md) answer in their own shapes; their refusals are {success: false, message, error: <code>}. x-gantry-role is the least role a route requires.',
    },
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        cookieAuth: { type: 'apiKey', in: 'cookie', name: 'session_token' },
      },
    },
    paths,
  };
}
