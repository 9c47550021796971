import type { RecoveryImageView, SnapshotItem, SystemStatus } from '../api-types.js';
import { fill, h, listen } from '../dom.js';
import type { App } from '../store.js';
import { confirmDialog, Feedback, field, formatTime, roleGate, roleNote, runAction, section } from '../ui.js';
import { fileDrop } from './upload.js';

function pinInput(id: string): HTMLInputElement {
  return h('input', {
    type: 'password',
    id,
    inputmode: 'numeric',
    autocomplete: 'off',
    pattern: '\\d{4,8}',
    maxlength: 8,
    class: 'short',
  });
}

export function recoverySection(app: App): HTMLElement {
  const { api, store, session } = app;

  // ---- rollback: point the next boot at the other slot ----
  const rollbackText = h('p', { 'data-testid': 'rollback-target' });
  const rollbackReason = h('input', {
    type: 'text',
    id: 'rollback-reason',
    value: 'Update issues detected',
    maxlength: 500,
  });
  const rollbackButton = h(
    'button',
    { type: 'button', id: 'rollback-button', class: 'danger' },
    'Execute Rollback',
  );
  const rollbackFeedback = new Feedback();
  rollbackFeedback.describe(rollbackButton);
  const renderRollback = (s: SystemStatus) => {
    const { active, inactive } = s.partitions;
    const usable = inactive.status === 'ready' || inactive.status === 'healthy';
    fill(
      rollbackText,
      usable
        ? `Boot slot ${inactive.id} (${inactive.version ?? 'no version'}) next, instead of slot ${active.id} (${active.version ?? '—'}).`
        : `Slot ${inactive.id} holds no verified image (${inactive.status}): there is nothing to roll back to.`,
    );
    rollbackButton.disabled = !usable;
    roleGate(rollbackButton, session.role, 'admin');
  };
  renderRollback(store.get('system'));
  store.on('system', renderRollback);
  listen(rollbackButton, 'click', async () => {
    const { active, inactive } = store.get('system').partitions;
    const ok = await confirmDialog({
      title: 'Execute rollback?',
      body: h(
        'p',
        {},
        `The gateway will boot slot ${inactive.id} (${inactive.version ?? '—'}) instead of slot ${active.id} (${active.version ?? '—'}) at its next reboot.`,
      ),
      confirmLabel: 'Execute Rollback',
      danger: true,
    });
    if (!ok) return;
    await runAction(rollbackButton, rollbackFeedback, async () => {
      const res = await api.post<{
        to_partition: string;
        to_version: string | null;
        reboot_required: boolean;
      }>('/api/v1/ota/recovery/rollback', {
        action: `rollback_to_${inactive.id.toLowerCase()}`,
        reason: rollbackReason.value.trim() || 'Operator rollback',
      });
      await app.refresh('system');
      return `Rollback done: the next boot is slot ${res.data.to_partition} (${res.data.to_version ?? '—'}).${
        res.data.reboot_required ? ' It takes effect at the next reboot.' : ''
      }`;
    });
    renderRollback(store.get('system'));
  });

  // ---- restore a snapshot onto the inactive slot ----
  const restoreSelect = h('select', { id: 'restore-version' });
  const restoreButton = h(
    'button',
    { type: 'button', id: 'restore-button', class: 'danger' },
    'Start Restore',
  );
  const restoreFeedback = new Feedback();
  restoreFeedback.describe(restoreButton);
  const renderSnapshots = (snaps: SnapshotItem[]) => {
    fill(
      restoreSelect,
      snaps.length
        ? snaps.map((s) =>
            h(
              'option',
              { value: s.version },
              `${s.version} — ${s.name} (${formatTime(s.created_at)}, ${s.size})`,
            ),
          )
        : h('option', { value: '' }, 'No snapshots yet: take one in section 1'),
    );
    restoreButton.disabled = snaps.length === 0;
    restoreSelect.disabled = snaps.length === 0;
    roleGate(restoreButton, session.role, 'admin');
  };
  renderSnapshots(store.get('snapshots'));
  store.on('snapshots', renderSnapshots);
  listen(restoreButton, 'click', async () => {
    const version = restoreSelect.value;
    const target = store.get('system').partitions.inactive.id;
    const ok = await confirmDialog({
      title: 'Restore a snapshot?',
      body: h(
        'p',
        {},
        `Snapshot ${version} will be written to slot ${target} and booted next. Slot ${target}'s current content is replaced.`,
      ),
      confirmLabel: 'Start Restore',
      danger: true,
    });
    if (!ok) return;
    await runAction(restoreButton, restoreFeedback, async () => {
      const res = await api.post<{ job_id: string; target_partition: string }>(
        '/api/v1/ota/recovery/restore',
        {
          version,
          target_partition: target,
        },
      );
      app.followJob(res.data.job_id);
      return `Restoring ${version} to slot ${res.data.target_partition} (job ${res.data.job_id}).`;
    });
  });

  // ---- factory reset: PIN, reason, explicit confirmation ----
  const factoryPin = pinInput('factory-pin');
  const factoryReason = h('input', { type: 'text', id: 'factory-reason', maxlength: 500 });
  const wipe = h('input', { type: 'checkbox', id: 'factory-wipe' });
  const factoryButton = h(
    'button',
    { type: 'submit', id: 'factory-button', class: 'danger' },
    'Factory Reset',
  );
  const factoryFeedback = new Feedback();
  factoryFeedback.describe(factoryButton);
  roleGate(factoryButton, session.role, 'admin');
  // A form, so Enter in the PIN field submits it and browsers treat the PIN as a form's field.
  const factoryForm = h('form', {
    id: 'factory-form',
    novalidate: true,
    autocomplete: 'off',
  });
  listen(factoryForm, 'submit', async (ev) => {
    ev.preventDefault();
    factoryFeedback.reset();
    if (!/^\d{4,8}$/.test(factoryPin.value)) {
      factoryFeedback.failText('Enter the safety PIN (4 to 8 digits).');
      factoryPin.focus();
      return;
    }
    if (!factoryReason.value.trim()) {
      factoryFeedback.failText('Give a reason for the factory reset.');
      factoryReason.focus();
      return;
    }
    const ok = await confirmDialog({
      title: 'Factory reset this gateway?',
      body: h(
        'div',
        {},
        h('p', {}, `Gateway ${session.gateway} is reset from its recovery image.`),
        wipe.checked ? h('p', { class: 'error' }, 'All data on the gateway will be wiped.') : null,
      ),
      confirmLabel: 'Factory Reset',
      danger: true,
    });
    if (!ok) return;
    await runAction(factoryButton, factoryFeedback, async () => {
      try {
        const res = await api.post<{ job_id: string; estimated_duration: string }>(
          '/api/v1/ota/recovery/factory',
          {
            pin: factoryPin.value,
            confirm: true,
            wipe_data: wipe.checked,
            reason: factoryReason.value.trim(),
          },
        );
        app.followJob(res.data.job_id);
        return `Factory reset started (about ${res.data.estimated_duration}).`;
      } finally {
        factoryPin.value = '';
      }
    });
  });

  // ---- recovery image ----
  const recoveryInfo = h('p', { 'data-testid': 'recovery-image' });
  const renderRecovery = (r: RecoveryImageView | null) =>
    fill(
      recoveryInfo,
      r
        ? `Current recovery image: ${r.filename} (${r.version}, ${r.size}), uploaded ${formatTime(r.uploaded_at)}.`
        : 'No recovery image uploaded yet: a factory reset needs one.',
    );
  renderRecovery(store.get('recovery'));
  store.on('recovery', renderRecovery);
  const recoveryDrop = fileDrop(
    'recovery-file',
    'Recovery image (signed bundle)',
    '.bundle,.swu,.img,application/octet-stream',
  );
  const uploadButton = h('button', { type: 'button', id: 'recovery-upload-button' }, 'Upload');
  const uploadFeedback = new Feedback();
  uploadFeedback.describe(uploadButton);
  roleGate(uploadButton, session.role, 'admin');
  listen(uploadButton, 'click', () =>
    runAction(
      uploadButton,
      uploadFeedback,
      async () => {
        const file = recoveryDrop.input.files?.[0];
        if (!file) throw new Error('choose a recovery image first');
        const res = await api.upload<{ filename: string; size: string; version: string }>(
          '/api/v1/ota/recovery/upload',
          file,
        );
        store.set('recovery', {
          filename: res.data.filename,
          version: res.data.version,
          size: res.data.size,
          uploaded_at: new Date(app.serverNow()).toISOString(),
        });
        return `Recovery image ${res.data.filename} (${res.data.version}) stored.`;
      },
      'Uploading…',
    ),
  );

  return section(
    'section-recovery',
    5,
    'Recovery Operations',
    h(
      'div',
      { class: 'subpanels' },
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Rollback'),
        rollbackText,
        field('Reason', rollbackReason),
        h('div', { class: 'actions' }, rollbackButton),
        rollbackFeedback.el,
      ),
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Restore from snapshot'),
        field('Snapshot', restoreSelect),
        h('div', { class: 'actions' }, restoreButton),
        restoreFeedback.el,
      ),
      fill(
        factoryForm,
        h(
          'fieldset',
          { class: 'subpanel' },
          h('legend', {}, 'Factory reset'),
          field('Safety PIN', factoryPin, '4 to 8 digits'),
          field('Reason', factoryReason),
          h('div', { class: 'check' }, wipe, h('label', { for: 'factory-wipe' }, 'Wipe all data')),
          h('div', { class: 'actions' }, factoryButton),
          factoryFeedback.el,
        ),
      ),
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Recovery image'),
        recoveryInfo,
        recoveryDrop.el,
        h('div', { class: 'actions' }, uploadButton),
        uploadFeedback.el,
      ),
    ),
    roleNote(session.role, 'admin'),
  );
}
