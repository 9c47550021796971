/**
 * Escaping template for server-rendered HTML (the idea of Hono's `html` tag): every interpolated
 * value is escaped unless it is itself a `SafeHtml` produced by this tag or `raw()`.
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new SafeHtml(out);
}

/** Trusted markup only (constants, output of `html`). */
export function raw(value: string): SafeHtml {
  return new SafeHtml(value);
}

/** JSON for a data-* attribute: escaped like any attribute value, so no string can close it. */
export function jsonAttr(value: unknown): string {
  return JSON.stringify(value);
}
