import type { Role } from './api-types.js';
import { byId, fill, h, uid, type Child } from './dom.js';
import { describeError } from './errors.js';

const ROLE_RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAllows(role: Role, needed: Role): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed];
}

/**
 * The line under a control where its outcome appears: a status (polite) and an error (alert) in
 * the same place, so the operator reads the result next to what caused it.
 */
export class Feedback {
  readonly el: HTMLElement;
  readonly errorId = uid('err');
  private readonly status: HTMLElement;
  private readonly error: HTMLElement;

  constructor() {
    this.status = h('p', { class: 'status', role: 'status' });
    this.error = h('p', { class: 'error', role: 'alert', id: this.errorId });
    this.el = h('div', { class: 'feedback' }, this.status, this.error);
  }

  ok(...message: Child[]): void {
    fill(this.error);
    fill(this.status, ...message);
  }

  fail(err: unknown): void {
    fill(this.status);
    fill(this.error, describeError(err));
  }

  failText(message: string): void {
    fill(this.status);
    fill(this.error, message);
  }

  reset(): void {
    fill(this.status);
    fill(this.error);
  }

  /** Points a control at this feedback so screen readers announce the error with it. */
  describe(control: HTMLElement): void {
    const ids = new Set((control.getAttribute('aria-describedby') ?? '').split(/\s+/).filter(Boolean));
    ids.add(this.errorId);
    control.setAttribute('aria-describedby', [...ids].join(' '));
  }
}

/**
 * Runs the action of a button: busy while it runs (no double submit), outcome in `feedback`.
 * The action returns the success message, or nothing to leave the feedback as it set it.
 */
export async function runAction(
  button: HTMLButtonElement,
  feedback: Feedback,
  action: () => Promise<Child | void>,
  busyLabel?: string,
): Promise<boolean> {
  const label = button.textContent ?? '';
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (busyLabel) button.textContent = busyLabel;
  feedback.reset();
  try {
    const message = await action();
    if (message !== undefined) feedback.ok(message);
    return true;
  } catch (err) {
    feedback.fail(err);
    return false;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    if (busyLabel) button.textContent = label;
  }
}

/** A button that is disabled, with the reason read out, when the role does not allow its action. */
export function roleGate(button: HTMLButtonElement, role: Role, needed: Role): void {
  if (roleAllows(role, needed)) return;
  button.disabled = true;
  button.dataset.roleLocked = needed;
  button.title = `Needs the ${needed} role`;
}

export function roleNote(role: Role, needed: Role): HTMLElement | null {
  return roleAllows(role, needed)
    ? null
    : h('p', { class: 'note' }, `Your role (${role}) can view this; changing it needs the ${needed} role.`);
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString([], {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

export function badge(textValue: string, kind: string): HTMLElement {
  return h('span', { class: `badge badge-${kind}` }, textValue);
}

export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || uid('f');
  control.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

export function checkbox(label: string, checked: boolean, props: Record<string, string> = {}): HTMLElement {
  const id = props.id ?? uid('cb');
  const input = h('input', { type: 'checkbox', id, checked, ...props });
  return h('div', { class: 'check' }, input, h('label', { for: id }, label));
}

export function section(id: string, number: number, title: string, ...children: Child[]): HTMLElement {
  return h(
    'section',
    { id, class: 'panel', 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, h('span', { class: 'section-number' }, `${number}`), ` ${title}`),
    ...children,
  );
}

// ---- confirmation dialog ---------------------------------------------------------------------

/**
 * A modal confirmation (native <dialog>: focus is trapped, Esc cancels). Resolves true only on
 * the explicit confirm button.
 */
export function confirmDialog(opts: {
  title: string;
  body: Child;
  confirmLabel: string;
  danger?: boolean;
}): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm-dialog');
  const titleId = uid('dlg');
  const cancel = h('button', { type: 'button', class: 'secondary', value: 'cancel' }, 'Cancel');
  const confirm = h(
    'button',
    { type: 'button', class: opts.danger ? 'danger' : 'primary', value: 'confirm' },
    opts.confirmLabel,
  );
  fill(
    dialog,
    h('h2', { id: titleId }, opts.title),
    h('div', { class: 'dialog-body' }, opts.body),
    h('div', { class: 'dialog-actions' }, cancel, confirm),
  );
  dialog.setAttribute('aria-labelledby', titleId);
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onClose = () => done(false);
    dialog.addEventListener('close', onClose);
    cancel.addEventListener('click', () => done(false));
    confirm.addEventListener('click', () => done(true));
    dialog.showModal();
    cancel.focus();
  });
}
