import type { InspectorState, MachineGraph } from './client/inspector/graph-types.js';
import { html, jsonAttr, type SafeHtml } from './html.js';
import { documentShell } from './layout.js';

export const INSPECTOR_PATH = '/dev/inspector';

/**
 * The inspector page: the statecharts' drawing model (web/inspector-graph.ts) and the actors'
 * states at render time in data attributes; the browser lays the charts out (elkjs, bundled into
 * inspector.js) and follows the `inspector.live` tRPC subscription from there.
 */
export function renderInspectorPage(machines: MachineGraph[], state: InspectorState): SafeHtml {
  return documentShell({
    title: 'Statechart inspector - Univa Gateway',
    scripts: ['inspector.js'],
    body: html`<a class="skip-link" href="#main">Skip to the statecharts</a>
      <header class="topbar">
        <div class="topbar-title">
          <h1>Statechart inspector</h1>
          <p class="topbar-sub">
            Live states of the partition, safety and job actors. Development tool (admins only).
            <a href="/ota-system-updates">Back to the OTA page</a>
          </p>
        </div>
      </header>
      <main id="main">
        <div id="inspector" data-machines="${jsonAttr(machines)}" data-state="${jsonAttr(state)}">
          <noscript><p class="banner banner-error">The inspector needs JavaScript.</p></noscript>
        </div>
      </main>`,
  });
}
