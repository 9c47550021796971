import { z } from 'zod';
import { ROLES } from '../../core/vocabulary.js';

export const loginInputSchema = z.lazy(() =>
  z.strictObject({
    username: z.string().min(1).max(64),
    password: z.string().min(1).max(256),
  }),
);

export const userSchema = z.lazy(() =>
  z.object({
    username: z.string(),
    role: z.enum(ROLES),
    gateways: z.array(z.string()),
  }),
);

export const loginOutputSchema = z.lazy(() =>
  z.object({
    token: z.string(),
    token_type: z.literal('Bearer'),
    expires_at: z.string(),
    user: userSchema,
  }),
);

export const createUserInputSchema = z.lazy(() =>
  z.strictObject({
    username: z.string().regex(/^[a-z0-9._-]{1,64}$/i, 'letters, digits, ".", "_" or "-"'),
    password: z.string().min(8).max(256),
    role: z.enum(ROLES),
    gateways: z.array(z.string().min(1)).min(1).default(['*']),
  }),
);
