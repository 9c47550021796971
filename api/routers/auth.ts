import { z } from 'zod';
import { isoSeconds } from '../../core/format.js';
import { createUserInputSchema, loginInputSchema, loginOutputSchema, userSchema } from '../schemas/auth.js';
import { authedProcedure, publicProcedure, requireRole, router } from '../trpc.js';

export const authRouter = router({
  login: publicProcedure
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
  logout: authedProcedure.output(z.object({ logged_out: z.literal(true) })).mutation(({ ctx }) => {
    ctx.deps.users.revokeSessions(ctx.user.username);
    ctx.meta.clearSessionCookie?.();
    return { logged_out: true as const };
  }),

  me: authedProcedure.output(userSchema).query(({ ctx }) => ({
    username: ctx.user.username,
    role: ctx.user.role,
    gateways: ctx.user.gateways,
  })),

  createUser: authedProcedure
    .use(requireRole('admin'))
    .input(createUserInputSchema)
    .output(userSchema)
    .mutation(({ ctx, input }) => ctx.deps.users.create(input)),
});
