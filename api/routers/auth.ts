import { z } from 'zod';
import { isoSeconds } from '../../core/format.js';
import { createUserInputSchema, loginInputSchema, loginOutputSchema, userSchema } from '../schemas/auth.js';
import { envelope } from '../meta.js';
import { accountAdminProcedure, authedProcedure, publicProcedure, router } from '../trpc.js';

export const authRouter = router({
  login: publicProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/auth/login',
        tag: 'Auth',
        summary: 'Log in: returns a JWT and sets the session_token cookie',
        reply: envelope('Login successful'),
        refusals: {
          401: 'Wrong username or password (AUTH_INVALID_CREDENTIALS)',
          429: 'Too many attempts (AUTH_RATE_LIMITED)',
        },
      },
    })
    .input(loginInputSchema)
    .output(loginOutputSchema)
    .mutation(async ({ ctx, input }) => {
      const { deps, meta } = ctx;
      try {
        const session = await deps.users.login(
          input.username,
          input.password,
          meta.remoteAddress ?? 'unknown',
        );
        meta.setSessionCookie?.(session.token, { maxAgeMs: deps.tokens.ttlSeconds * 1000 });
        deps.audit.record({
          username: input.username,
          gatewayId: null,
          action: 'auth.login',
          outcome: 'success',
          remoteAddress: meta.remoteAddress,
        });
        return {
          token: session.token,
          token_type: 'Bearer' as const,
          expires_at: isoSeconds(session.expiresAt),
          user: session.user,
        };
      } catch (err) {
        deps.audit.record({
          username: input.username,
          gatewayId: null,
          action: 'auth.login',
          outcome: 'failure',
          detail: (err as { gantryCode?: string }).gantryCode ?? 'error',
          remoteAddress: meta.remoteAddress,
        });
        throw err;
      }
    }),

  /** Clears the cookie and revokes every token of the user (stateless JWTs cannot be revoked one by one). */
  logout: authedProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/auth/logout',
        tag: 'Auth',
        summary: 'Log out: clears the cookie and revokes the user\u2019s tokens',
        reply: envelope('Logged out'),
      },
    })
    .output(z.object({ logged_out: z.literal(true) }))
    .mutation(({ ctx }) => {
      ctx.deps.users.revokeSessions(ctx.user.username);
      ctx.meta.clearSessionCookie?.();
      return { logged_out: true as const };
    }),

  me: authedProcedure.output(userSchema).query(({ ctx }) => ({
    username: ctx.user.username,
    role: ctx.user.role,
    gateways: ctx.user.gateways,
  })),

  createUser: accountAdminProcedure
    .input(createUserInputSchema)
    .output(userSchema)
    .mutation(({ ctx, input }) => ctx.deps.users.create(input)),
});
