import { z } from 'zod';
import { ERROR_CODES } from '../core/errors.js';
import type { RestRoute } from './route.js';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
}

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

function envelope(data: JsonSchema): JsonSchema {
  return {
    type: 'object',
    required: ['data', 'success', 'message'],
    properties: { data, success: { const: true }, message: { type: 'string' } },
  };
}

/**
 * The OpenAPI 3.1 document of every REST-compat route, generated from the route table and the very
 * zod schemas the procedures validate with (zod 4's own JSON Schema output; 3.1 uses JSON Schema).
 */
export function buildOpenApi(routes: readonly RestRoute[], extra: Record<string, unknown> = {}): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters: unknown[] = [];
    if (route.gateway) {
      parameters.push({
        name: 'X-Gateway-ID',
        in: 'header',
        required: true,
        schema: { type: 'string' },
        example: 'GW-3920A9',
      });
    }
    let requestBody: unknown;
    if (route.input?.from === 'query') {
      const json = schemaOf(route.input.schema, 'input');
      const props = (json.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((json.required as string[] | undefined) ?? []);
      for (const [name, schema] of Object.entries(props)) {
        parameters.push({ name, in: 'query', required: required.has(name), schema });
      }
    } else if (route.input?.from === 'multipart') {
      requestBody = {
        required: true,
        content: { 'multipart/form-data': { schema: schemaOf(route.input.schema, 'input') } },
      };
    } else if (route.input?.from === 'body') {
      requestBody = {
        required: true,
        content: { 'application/json': { schema: schemaOf(route.input.schema, 'input') } },
      };
    }
    const responses: Record<string, unknown> = {
      200: {
        description: 'Success',
        content: { 'application/json': { schema: envelope(schemaOf(route.output, 'output')) } },
      },
      400: {
        description: 'Invalid input (the field is named)',
        content: { 'application/json': { schema: errorEnvelope } },
      },
    };
    if (route.role) {
      responses[401] = {
        description: 'Missing, expired or invalid token',
        content: { 'application/json': { schema: errorEnvelope } },
      };
      responses[403] = {
        description: 'Role or gateway not allowed',
        content: { 'application/json': { schema: errorEnvelope } },
      };
    }
    if (route.gateway)
      responses[404] = {
        description: 'Unknown gateway',
        content: { 'application/json': { schema: errorEnvelope } },
      };
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      tags: [route.tag],
      summary: route.summary,
      description: route.role ? `Requires role: ${route.role}.` : 'Public.',
      ...(route.role ? { security: [{ bearerAuth: [] }, { cookieAuth: [] }] } : {}),
      parameters,
      ...(requestBody ? { requestBody } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Gantry OTA & System API',
      version: '1.0.0',
      description:
        'OTA update management for industrial gateways. Every response is the envelope {data, success, message}; errors carry {success: false, error: {code, message}}.',
    },
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        cookieAuth: { type: 'apiKey', in: 'cookie', name: 'session_token' },
      },
    },
    paths,
    ...extra,
  };
}
