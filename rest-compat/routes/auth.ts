import { z } from 'zod';
import { loginInputSchema, loginOutputSchema } from '../../api/schemas/auth.js';
import { defineRoute } from '../route.js';

export const authRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/auth/login',
    tag: 'Auth',
    summary: 'Log in: returns a JWT and sets the session_token cookie',
    role: null,
    gateway: false,
    input: { from: 'body', schema: loginInputSchema },
    output: loginOutputSchema,
    message: 'Login successful',
    call: (caller, input: z.infer<typeof loginInputSchema>) => caller.auth.login(input),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/auth/logout',
    tag: 'Auth',
    summary: 'Log out: clears the cookie and revokes the user\u2019s tokens',
    role: 'viewer',
    gateway: false,
    output: z.object({ logged_out: z.literal(true) }),
    message: 'Logged out',
    call: (caller) => caller.auth.logout(),
  }),
];
