import type { Settings, UpdateStrategy, Weekday } from '../api-types.js';
import { fill, h, uid } from '../dom.js';
import { fieldErrors } from '../errors.js';
import type { App } from '../store.js';
import { Feedback, formatTime, roleAllows, roleNote, runAction, section } from '../ui.js';

const WEEKDAYS: Weekday[] = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const STRATEGIES: Array<{ value: UpdateStrategy; label: string }> = [
  { value: 'seamless', label: 'Seamless: write the inactive slot, switch on reboot' },
  { value: 'in-place', label: 'In-place: update the current slot directly' },
  { value: 'rolling', label: 'Rolling: one component at a time' },
];

/** One validated input: its label, the control, and the message line tied to it. */
class SettingField {
  readonly el: HTMLElement;
  private readonly message: HTMLElement;

  constructor(
    readonly path: string,
    label: string,
    readonly control: HTMLInputElement | HTMLSelectElement,
    hint?: string,
  ) {
    control.id ||= uid('set');
    this.message = h('p', { class: 'field-error', id: `${control.id}-error`, 'aria-live': 'polite' });
    const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
    control.setAttribute('aria-describedby', [hintEl?.id, this.message.id].filter(Boolean).join(' '));
    const isCheck = control instanceof HTMLInputElement && control.type === 'checkbox';
    const labelEl = h('label', { for: control.id }, label);
    this.el = isCheck
      ? h('div', { class: 'check' }, control, labelEl, hintEl, this.message)
      : h('div', { class: 'field' }, labelEl, control, hintEl, this.message);
  }

  setError(message: string | null): void {
    fill(this.message, message ?? '');
    if (message) this.control.setAttribute('aria-invalid', 'true');
    else this.control.removeAttribute('aria-invalid');
  }
}

function check(id: string): HTMLInputElement {
  return h('input', { type: 'checkbox', id });
}

function numberInput(id: string, min: number, max: number): HTMLInputElement {
  return h('input', { type: 'number', id, min, max, step: 1, inputmode: 'numeric', class: 'short' });
}

function select(id: string, options: Array<{ value: string; label: string }>): HTMLSelectElement {
  return h(
    'select',
    { id },
    options.map((o) => h('option', { value: o.value }, o.label)),
  );
}

function intIn(value: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(value.trim())) return null;
  const n = Number(value);
  return n >= min && n <= max ? n : null;
}

export function settingsSection(app: App): HTMLElement {
  const { api, store, session } = app;
  const editable = roleAllows(session.role, 'admin');

  const c = {
    enabled: check('set-auto-enabled'),
    autoDownload: check('set-auto-download'),
    autoSecurity: check('set-auto-security'),
    autoReboot: check('set-auto-reboot'),
    mwEnabled: check('set-mw-enabled'),
    schedule: select('set-mw-schedule', [
      { value: 'daily', label: 'Daily' },
      { value: 'weekly', label: 'Weekly' },
    ]),
    time: h('input', { type: 'time', id: 'set-mw-time', required: true, class: 'short' }),
    day: select(
      'set-mw-day',
      WEEKDAYS.map((d) => ({ value: d, label: d[0]!.toUpperCase() + d.slice(1) })),
    ),
    duration: numberInput('set-mw-duration', 15, 720),
    strategy: select('set-strategy', STRATEGIES),
    autoRollback: check('set-auto-rollback'),
    retries: numberInput('set-rollback-retries', 1, 10),
    autoCheck: check('set-auto-check'),
    interval: numberInput('set-check-interval', 1, 168),
  };
  const timezoneHint = h('span', {});
  const f = {
    enabled: new SettingField('auto_update.enabled', 'Automatic updates', c.enabled),
    autoDownload: new SettingField(
      'auto_update.auto_download',
      'Download updates automatically',
      c.autoDownload,
    ),
    autoSecurity: new SettingField(
      'auto_update.auto_security',
      'Install security updates automatically',
      c.autoSecurity,
    ),
    autoReboot: new SettingField(
      'auto_update.auto_reboot',
      'Reboot automatically after installing',
      c.autoReboot,
    ),
    mwEnabled: new SettingField('maintenance_window.enabled', 'Use a maintenance window', c.mwEnabled),
    schedule: new SettingField('maintenance_window.schedule', 'Schedule', c.schedule),
    time: new SettingField(
      'maintenance_window.time',
      'Start time',
      c.time,
      '24-hour time, gateway local time',
    ),
    day: new SettingField('maintenance_window.day', 'Day of the week', c.day),
    duration: new SettingField(
      'maintenance_window.duration_minutes',
      'Duration (minutes)',
      c.duration,
      '15 to 720',
    ),
    strategy: new SettingField('update_strategy', 'Update strategy', c.strategy),
    autoRollback: new SettingField(
      'auto_rollback',
      'Roll back automatically after failed boots',
      c.autoRollback,
    ),
    retries: new SettingField('rollback_retries', 'Boot attempts before rollback', c.retries, '1 to 10'),
    autoCheck: new SettingField('auto_check', 'Check for updates periodically', c.autoCheck),
    interval: new SettingField('check_interval_hours', 'Check every (hours)', c.interval, '1 to 168'),
  };
  const fields = Object.values(f);

  const load = (s: Settings) => {
    c.enabled.checked = s.auto_update.enabled;
    c.autoDownload.checked = s.auto_update.auto_download;
    c.autoSecurity.checked = s.auto_update.auto_security;
    c.autoReboot.checked = s.auto_update.auto_reboot;
    c.mwEnabled.checked = s.maintenance_window.enabled;
    c.schedule.value = s.maintenance_window.schedule;
    c.time.value = s.maintenance_window.time;
    c.day.value = s.maintenance_window.day;
    c.duration.value = String(s.maintenance_window.duration_minutes);
    c.strategy.value = s.update_strategy;
    c.autoRollback.checked = s.auto_rollback;
    c.retries.value = String(s.rollback_retries);
    c.autoCheck.checked = s.auto_check;
    c.interval.value = String(s.check_interval_hours);
    fill(timezoneHint, `Time zone: ${s.maintenance_window.timezone}`);
    syncVisibility();
    for (const fl of fields) fl.setError(null);
  };
  const syncVisibility = () => {
    f.day.el.hidden = c.schedule.value !== 'weekly';
  };
  c.schedule.addEventListener('change', syncVisibility);

  // Only the auto-update flag changes elsewhere (the toggle in section 2): keep the form in step.
  store.on('settings', (s) => {
    c.enabled.checked = s.auto_update.enabled;
  });
  load(store.get('settings'));

  if (!editable) {
    for (const ctl of Object.values(c)) ctl.disabled = true;
  }

  /** Client-side checks; returns the payload or null after marking the fields at fault. */
  const validate = () => {
    for (const fl of fields) fl.setError(null);
    let ok = true;
    const fail = (fl: SettingField, msg: string) => {
      fl.setError(msg);
      ok = false;
    };
    if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(c.time.value))
      fail(f.time, 'Enter a start time as HH:MM (24-hour).');
    const duration = intIn(c.duration.value, 15, 720);
    if (duration === null) fail(f.duration, 'Enter whole minutes from 15 to 720.');
    const retries = intIn(c.retries.value, 1, 10);
    if (retries === null) fail(f.retries, 'Enter a number of boot attempts from 1 to 10.');
    const interval = intIn(c.interval.value, 1, 168);
    if (interval === null) fail(f.interval, 'Enter a number of hours from 1 to 168.');
    if (!ok) return null;
    return {
      auto_update: {
        enabled: c.enabled.checked,
        auto_download: c.autoDownload.checked,
        auto_security: c.autoSecurity.checked,
        auto_reboot: c.autoReboot.checked,
      },
      maintenance_window: {
        enabled: c.mwEnabled.checked,
        schedule: c.schedule.value as 'daily' | 'weekly',
        time: c.time.value,
        day: c.day.value as Weekday,
        duration_minutes: duration!,
      },
      update_strategy: c.strategy.value as UpdateStrategy,
      auto_rollback: c.autoRollback.checked,
      rollback_retries: retries!,
      auto_check: c.autoCheck.checked,
      check_interval_hours: interval!,
    };
  };

  const save = h(
    'button',
    { type: 'submit', id: 'settings-save', class: 'primary', disabled: !editable },
    'Save Settings',
  );
  const feedback = new Feedback();
  feedback.describe(save);
  const form = h(
    'form',
    { id: 'settings-form', novalidate: true },
    h(
      'div',
      { class: 'subpanels' },
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Automatic updates'),
        f.enabled.el,
        f.autoDownload.el,
        f.autoSecurity.el,
        f.autoReboot.el,
        f.autoCheck.el,
        f.interval.el,
      ),
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Maintenance window'),
        f.mwEnabled.el,
        f.schedule.el,
        f.day.el,
        f.time.el,
        f.duration.el,
        h('p', { class: 'hint' }, timezoneHint),
      ),
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Strategy and rollback'),
        f.strategy.el,
        f.autoRollback.el,
        f.retries.el,
      ),
    ),
    h('div', { class: 'actions' }, save),
    feedback.el,
    roleNote(session.role, 'admin'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!editable) return;
    const payload = validate();
    if (!payload) {
      feedback.failText('Some settings need correcting: see the messages above.');
      fields.find((fl) => fl.control.getAttribute('aria-invalid') === 'true')?.control.focus();
      return;
    }
    void runAction(save, feedback, async () => {
      try {
        const res = await api.post<{ updated: true; next_maintenance_window: string | null }>(
          '/api/v1/ota/settings',
          payload,
        );
        await app.refresh('settings');
        load(store.get('settings'));
        return `Settings saved.${
          res.data.next_maintenance_window
            ? ` Next maintenance window: ${formatTime(res.data.next_maintenance_window)}.`
            : ''
        }`;
      } catch (err) {
        for (const { field, message } of fieldErrors(err)) {
          fields.find((fl) => fl.path === field)?.setError(message);
        }
        throw err;
      }
    });
  });

  return section('section-settings', 4, 'Update Settings & Schedule', form);
}
