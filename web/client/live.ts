import type { LiveMessage } from './api-types.js';

type MessageType = LiveMessage['type'];
type MessageOf<T extends MessageType> = Extract<LiveMessage, { type: T }>;
export type LiveStatus = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Close codes after which reconnecting cannot help (server/ota-ws.ts). */
const FATAL_CLOSE = { 4401: 'session', 4403: 'forbidden', 4404: 'gateway' } as const;

/**
 * /api/v1/ota/ws for the page. The page cannot read its HttpOnly session cookie, so it
 * authenticates with `{"type":"auth","token":"cookie"}`: the server takes the cookie the browser
 * sent with the upgrade (same origin only). Reconnects with backoff; a refused session is final.
 */
export class LiveChannel {
  private ws: WebSocket | null = null;
  private attempts = 0;
  private stopped = false;
  private readonly handlers = new Map<MessageType, Set<(m: LiveMessage) => void>>();
  private readonly statusHandlers = new Set<(s: LiveStatus, reason?: string) => void>();
  status: LiveStatus = 'connecting';

  constructor(private readonly gatewayId: string) {}

  on<T extends MessageType>(type: T, handler: (m: MessageOf<T>) => void): void {
    const set = this.handlers.get(type) ?? new Set();
    set.add(handler as (m: LiveMessage) => void);
    this.handlers.set(type, set);
  }

  onStatus(handler: (s: LiveStatus, reason?: string) => void): void {
    this.statusHandlers.add(handler);
  }

  private setStatus(status: LiveStatus, reason?: string): void {
    this.status = status;
    for (const h of this.statusHandlers) h(status, reason);
  }

  connect(): void {
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ota/ws`);
    this.ws = ws;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'auth', token: 'cookie', gateway_id: this.gatewayId }));
    });
    ws.addEventListener('message', (ev) => {
      let msg: { type?: string };
      try {
        msg = JSON.parse(String(ev.data)) as { type?: string };
      } catch {
        return;
      }
      if (msg.type === 'auth_ok') {
        this.attempts = 0;
        this.setStatus('connected');
        return;
      }
      for (const h of this.handlers.get(msg.type as MessageType) ?? []) {
        try {
          h(msg as LiveMessage);
        } catch (err) {
          console.error('live message handler', err);
        }
      }
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const fatal = FATAL_CLOSE[ev.code as keyof typeof FATAL_CLOSE];
      if (fatal || this.stopped) {
        this.setStatus('closed', fatal);
        return;
      }
      this.setStatus('reconnecting');
      const delay = Math.min(10_000, 500 * 2 ** this.attempts++);
      setTimeout(() => this.connect(), delay);
    });
  }

  close(): void {
    this.stopped = true;
    this.ws?.close();
  }
}
