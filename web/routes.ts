import express, { type Express, type Request, type Response } from 'express';
import { roleAtLeast } from '../core/auth.js';
import type { GantryDeps } from '../server/deps.js';
import { createContextInner } from '../api/context.js';
import { createCaller } from '../api/routers/_app.js';
import { findGantryError } from '../core/errors.js';
import { INSPECTOR_PATH, renderInspectorPage } from './inspector.js';
import { messagePage, sendPage, webPublicDir } from './layout.js';
import { LOGIN_PATH, renderLoginPage } from './login-page.js';
import { loadOtaPageData, OTA_PAGE_PATH, renderOtaPage } from './ota-page.js';
import { accessibleGateways, chooseGateway, pageSession, setGatewayCookie } from './session.js';

function notFound(res: Response): void {
  sendPage(res, 404, messagePage('Not found', 'There is no page at this address.'));
}

/**
 * The operator's pages: the OTA page, the login page, the statechart inspector, and the built
 * browser bundles under /assets (scripts/build-web.ts; served from this server, never a CDN).
 */
export function mountWebPages(app: Express, deps: GantryDeps): void {
  app.use(
    '/assets',
    express.static(webPublicDir(), {
      index: false,
      // ?v=<mtime> in every page's URL changes with each build; revalidating is still cheap.
      setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache'),
    }),
  );

  app.use('/assets', (_req, res) => {
    res.status(404).type('text/plain').send('Not found (run npm run build:web)');
  });

  app.get('/', (_req, res) => res.redirect(302, OTA_PAGE_PATH));
  // Browsers ask for it on every page; there is none, and a 404 would only add noise to logs.
  app.get('/favicon.ico', (_req, res) => res.status(204).end());

  app.get(OTA_PAGE_PATH, async (req: Request, res: Response) => {
    const session = pageSession(deps, req);
    if (!session) return res.redirect(302, LOGIN_PATH);
    // The picker (a plain GET form) remembers the choice in a cookie, then shows the clean URL.
    if (typeof req.query.gateway === 'string') {
      if (accessibleGateways(deps, session.user).includes(req.query.gateway)) {
        setGatewayCookie(deps, res, req.query.gateway);
      }
      return res.redirect(303, OTA_PAGE_PATH);
    }
    const choice = chooseGateway(deps, req, session);
    if (!choice.ok) {
      return sendPage(res, choice.status, messagePage('Gateway not available', choice.message));
    }
    try {
      const data = await loadOtaPageData(
        deps,
        { ...session.meta, gatewayId: choice.gatewayId },
        {
          username: session.user.username,
          role: session.user.role,
          gateways: accessibleGateways(deps, session.user),
        },
      );
      sendPage(res, 200, renderOtaPage(data));
    } catch (err) {
      console.error('[gantry] GET /ota-system-updates:', err);
      sendPage(
        res,
        500,
        messagePage('Gateway not readable', 'The gateway could not be read just now. Reload to try again.'),
      );
    }
  });

  app.get(LOGIN_PATH, (req, res) => {
    const session = pageSession(deps, req);
    sendPage(res, 200, renderLoginPage({ signedInAs: session?.user.username, next: OTA_PAGE_PATH }));
  });

  // Development inspector: admins only; everyone else is told there is nothing here.
  const admin = (req: Request) => {
    const session = pageSession(deps, req);
    return session && roleAtLeast(session.user.role, 'admin') ? session : null;
  };
  app.get(INSPECTOR_PATH, async (req, res) => {
    const session = admin(req);
    if (!session) return notFound(res);
    // xstate/graph and the drawing model load with the first visit, not with the server.
    const { inspectorMachines } = await import('./inspector-graph.js');
    const state = await createCaller(createContextInner(deps, session.meta)).inspector.state();
    sendPage(res, 200, renderInspectorPage(inspectorMachines(), state));
  });
  app.get(`${INSPECTOR_PATH}/jobs/:jobId/transitions`, async (req, res) => {
    const session = admin(req);
    if (!session) return res.status(404).json({ success: false, message: 'Not found' });
    const caller = createCaller(createContextInner(deps, session.meta));
    try {
      const transitions = await caller.inspector.transitions({ jobId: String(req.params.jobId) });
      res.setHeader('Cache-Control', 'no-store');
      res.json({ job_id: req.params.jobId, transitions });
    } catch (err) {
      // Unknown, not visible to this admin, or not a job id at all: there is nothing here.
      if (!findGantryError(err)) throw err;
      res.status(404).json({ success: false, message: 'Not found' });
    }
  });
}
