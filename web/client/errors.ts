import type { ConstraintName } from './api-types.js';
import { ApiError } from './api.js';

export const CONSTRAINT_LABELS: Record<ConstraintName, string> = {
  crane_motion: 'Crane motion',
  acs_collision: 'Anti-collision system (ACS)',
  ups_battery: 'UPS battery',
  network: 'Network connection',
  system_load: 'System load',
};

export function constraintLabel(name: string): string {
  return CONSTRAINT_LABELS[name as ConstraintName] ?? name.replace(/_/g, ' ');
}

function list(names: string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

function time(iso: unknown): string {
  if (typeof iso !== 'string') return 'later';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Strips the API's "Invalid request: field: " prefix, which speaks to programmers. */
function plain(message: string): string {
  return message.replace(/^Invalid request:\s*/, '');
}

/**
 * What an operator reads next to the control that failed: what happened and what to do, in
 * plant words. The code decides the wording; the server's message adds the specifics.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof ApiError)) {
    return err instanceof Error ? `Something went wrong: ${err.message}` : 'Something went wrong.';
  }
  const d = err.details ?? {};
  switch (err.code) {
    case 'OTA_UPDATE_BLOCKED': {
      const blocking = Array.isArray(d.blocking) ? d.blocking.map((b) => constraintLabel(String(b))) : [];
      return blocking.length
        ? `Blocked by safety: ${list(blocking)}. Wait until ${blocking.length > 1 ? 'they clear' : 'it clears'}, or use a safety override (section 6).`
        : `Blocked by safety constraints: ${err.message}`;
    }
    case 'OTA_OPERATION_IN_PROGRESS':
      return `Another operation is running${typeof d.id === 'string' ? ` (${String(d.operation ?? '')} ${d.id})` : ''}. Wait for it to finish or cancel it in section 7.`;
    case 'OTA_INVALID_PIN':
      return typeof d.attempts_left === 'number'
        ? `Wrong PIN. ${d.attempts_left} attempt${d.attempts_left === 1 ? '' : 's'} left before overrides are locked.`
        : 'Wrong PIN.';
    case 'OTA_PIN_LOCKED':
      return `Too many wrong PINs: PIN entry is locked until ${time(d.locked_until)}.`;
    case 'OTA_SIGNATURE_FAILED':
      return `The image's signature could not be verified, so it will not be installed: ${err.message}`;
    case 'OTA_INVALID_IMAGE':
      return `This is not a valid update image for this gateway: ${err.message}`;
    case 'OTA_INSUFFICIENT_SPACE':
      return `Not enough free space on the gateway: ${err.message}`;
    case 'OTA_DOWNLOAD_FAILED':
      return `The download failed: ${err.message}`;
    case 'OTA_FEED_NOT_CONFIGURED':
      return `There is nowhere to check for updates yet. ${err.message}`;
    case 'OTA_INSTALL_FAILED':
      return `The installation failed: ${err.message}`;
    case 'OTA_ROLLBACK_FAILED':
      return `The rollback is not possible: ${err.message}`;
    case 'OTA_RECOVERY_FAILED':
      return `The recovery operation failed: ${err.message}`;
    case 'FORBIDDEN':
      return `Your account is not allowed to do this: ${err.message}.`;
    case 'GATEWAY_FORBIDDEN':
      return 'Your account may not act on this gateway.';
    case 'CSRF_REJECTED':
      return 'Refused because the request did not come from this page. Reload the page and try again.';
    case 'AUTH_REQUIRED':
    case 'AUTH_INVALID_TOKEN':
    case 'AUTH_TOKEN_EXPIRED':
      return 'Your session has ended. Sign in again.';
    case 'AUTH_INVALID_CREDENTIALS':
      return 'Wrong username or password.';
    case 'AUTH_RATE_LIMITED':
      return 'Too many sign-in attempts. Wait a minute and try again.';
    case 'PAYLOAD_TOO_LARGE':
      return `The file is too large: ${err.message}`;
    case 'NOT_FOUND':
      return err.message;
    case 'VALIDATION_ERROR':
      return `Check the entry: ${plain(err.message)}`;
    case 'NETWORK':
      return 'The gateway server cannot be reached. Check the connection and try again.';
    default:
      return err.message;
  }
}

/** Field paths the server named in a VALIDATION_ERROR (`details.fields`), with their messages. */
export function fieldErrors(err: unknown): Array<{ field: string; message: string }> {
  if (!(err instanceof ApiError) || err.code !== 'VALIDATION_ERROR') return [];
  const fields = err.details?.fields;
  if (!Array.isArray(fields)) return [];
  return fields.flatMap((f) => {
    const o = f as { field?: unknown; message?: unknown };
    return typeof o.field === 'string' ? [{ field: o.field, message: String(o.message ?? 'invalid') }] : [];
  });
}
