/**
 * Calls to the documented REST routes: same-origin fetch with the session cookie (the browser adds
 * Origin, which cookie-authenticated writes need), X-Gateway-ID, JSON in the documented envelope.
 */

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details: Record<string, unknown> | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface Envelope<T> {
  data: T;
  message: string;
}

type SessionListener = (err: ApiError) => void;

const AUTH_CODES = ['AUTH_REQUIRED', 'AUTH_INVALID_TOKEN', 'AUTH_TOKEN_EXPIRED'];

export class Api {
  private readonly sessionListeners = new Set<SessionListener>();

  constructor(private readonly gatewayId: string | null) {}

  /** Called when a call answers that the session is over (expired, revoked, logged out elsewhere). */
  onSessionEnded(listener: SessionListener): void {
    this.sessionListeners.add(listener);
  }

  private headers(json: boolean): Record<string, string> {
    return {
      Accept: 'application/json',
      ...(this.gatewayId ? { 'X-Gateway-ID': this.gatewayId } : {}),
      ...(json ? { 'Content-Type': 'application/json' } : {}),
    };
  }

  get<T>(path: string, query?: Record<string, string | number>): Promise<Envelope<T>> {
    const qs = query
      ? `?${new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString()}`
      : '';
    return this.send<T>('GET', path + qs);
  }

  post<T>(path: string, body: unknown = {}): Promise<Envelope<T>> {
    return this.send<T>('POST', path, body);
  }

  private async send<T>(method: string, path: string, body?: unknown): Promise<Envelope<T>> {
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        credentials: 'same-origin',
        headers: this.headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError('NETWORK', 'The gateway server cannot be reached', 0);
    }
    return this.parse<T>(res.status, await res.text());
  }

  /**
   * Multipart upload with progress (fetch cannot report upload progress; images are large).
   * `fields` go before the file so the server reads them first.
   */
  upload<T>(
    path: string,
    file: File,
    fields: Record<string, string> = {},
    onProgress?: (fraction: number) => void,
  ): Promise<Envelope<T>> {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('file', file, file.name);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path);
      xhr.withCredentials = true;
      for (const [k, v] of Object.entries(this.headers(false))) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
      };
      xhr.onerror = () => reject(new ApiError('NETWORK', 'The gateway server cannot be reached', 0));
      xhr.onload = () => {
        try {
          resolve(this.parse<T>(xhr.status, xhr.responseText));
        } catch (err) {
          reject(err);
        }
      };
      xhr.send(form);
    });
  }

  private parse<T>(status: number, text: string): Envelope<T> {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ApiError('BAD_RESPONSE', `Unexpected answer from the server (HTTP ${status})`, status);
    }
    const env = json as {
      success?: boolean;
      data?: T;
      message?: string;
      error?: { code?: string; message?: string; details?: Record<string, unknown> } | string;
    };
    if (status >= 200 && status < 300 && env.success !== false) {
      return { data: env.data as T, message: env.message ?? '' };
    }
    const error = typeof env.error === 'object' && env.error ? env.error : null;
    const err = new ApiError(
      error?.code ?? (typeof env.error === 'string' ? env.error : `HTTP_${status}`),
      error?.message ?? env.message ?? `Request failed (HTTP ${status})`,
      status,
      error?.details ?? null,
    );
    if (AUTH_CODES.includes(err.code)) for (const l of this.sessionListeners) l(err);
    throw err;
  }
}
