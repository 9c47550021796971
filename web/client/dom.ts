/**
 * The one way the page builds DOM: elements and text nodes, never HTML strings. Whatever a feed,
 * a log line or a file name contains ends up as text (`textContent`), so it cannot become markup.
 */

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (event: Event) => void;

export interface Props {
  [attr: string]: string | number | boolean | null | undefined | Handler;
}

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
    return;
  }
  parent.appendChild(typeof child === 'string' || typeof child === 'number' ? text(child) : child);
}

export function text(value: string | number): Text {
  return document.createTextNode(String(value));
}

/**
 * `h('button', { type: 'button', class: 'primary', onclick: fn }, 'Save')`. Props starting with
 * "on" are listeners; `true` sets a boolean attribute, `false`/null/undefined leave it out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(value);
    } else if (name === 'checked' && el instanceof HTMLInputElement) {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const c of children) append(el, c);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Replaces the content of `el` with `children`; returns `el`. */
export function fill<T extends Element>(el: T, ...children: Child[]): T {
  clear(el);
  for (const c of children) append(el, c);
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
}

let seq = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix: string): string {
  return `${prefix}-${++seq}`;
}

/** Reads a JSON data-* attribute the server rendered. */
export function dataJson<T>(el: HTMLElement, name: string): T {
  const raw = el.dataset[name];
  if (raw === undefined) throw new Error(`missing data-${name}`);
  return JSON.parse(raw) as T;
}

/**
 * addEventListener for async handlers. Handlers report their own failures next to their control
 * (runAction, try/catch); a rejection that still escapes is a bug, logged instead of lost.
 */
export function listen<K extends keyof HTMLElementEventMap>(
  target: HTMLElement,
  type: K,
  handler: (event: HTMLElementEventMap[K]) => Promise<unknown>,
): void {
  target.addEventListener(type, (event) => {
    handler(event).catch((err: unknown) => console.error(`unhandled ${type} handler failure`, err));
  });
}
