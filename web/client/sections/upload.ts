import { fill, h, listen } from '../dom.js';
import type { App } from '../store.js';
import { Feedback, field, roleGate, roleNote, runAction, section } from '../ui.js';

interface VerifyResult {
  verified: true;
  file: { name: string; size: string; checksum: string; version: string };
  metadata: { kernel: string; signature: string };
  compatibility: { hardware: string };
}

function humanSize(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A file input inside a drop zone: click, keyboard (it is a real input) or drag and drop. */
export function fileDrop(
  id: string,
  label: string,
  accept: string,
): { el: HTMLElement; input: HTMLInputElement } {
  const input = h('input', { type: 'file', id, accept, class: 'file-input' });
  const chosen = h('p', { class: 'file-chosen', 'aria-live': 'polite' });
  const zone = h(
    'div',
    { class: 'dropzone', 'data-testid': `${id}-zone` },
    h('label', { for: id }, label),
    input,
    h('p', { class: 'hint' }, 'Choose a file, or drop it here.'),
    chosen,
  );
  const show = () => {
    const f = input.files?.[0];
    fill(chosen, f ? `Selected: ${f.name} (${humanSize(f.size)})` : '');
  };
  input.addEventListener('change', show);
  zone.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('dragging');
    const files = ev.dataTransfer?.files;
    if (files && files.length > 0) {
      input.files = files;
      input.dispatchEvent(new Event('change'));
    }
  });
  return { el: zone, input };
}

export function uploadSection(app: App): HTMLElement {
  const { api, store, session } = app;
  const drop = fileDrop('upload-file', 'Firmware bundle', '.bundle,.swu,.img,application/octet-stream');
  const version = h('input', { type: 'text', id: 'upload-version', maxlength: 64, autocomplete: 'off' });
  const verify = h(
    'button',
    { type: 'button', id: 'upload-verify-button', class: 'primary' },
    'Verify & Prepare Deployment',
  );
  const verifyFeedback = new Feedback();
  verifyFeedback.describe(verify);
  roleGate(verify, session.role, 'operator');
  const progress = h('progress', {
    max: 100,
    value: 0,
    class: 'upload-progress',
    'aria-label': 'Upload progress',
    hidden: true,
  });

  const result = h('div', { class: 'verify-result', 'data-testid': 'upload-result' });
  const deploy = h('button', { type: 'button', id: 'upload-deploy-button', class: 'primary', hidden: true });
  const deployFeedback = new Feedback();
  deployFeedback.describe(deploy);
  let verified: VerifyResult | null = null;

  const renderDeployLabel = () => {
    deploy.textContent = `Deploy to Partition ${store.get('system').partitions.inactive.id}`;
  };
  renderDeployLabel();
  store.on('system', renderDeployLabel);

  drop.input.addEventListener('change', () => {
    verified = null;
    deploy.hidden = true;
    fill(result);
    verifyFeedback.reset();
    deployFeedback.reset();
  });

  listen(verify, 'click', () =>
    runAction(
      verify,
      verifyFeedback,
      async () => {
        const file = drop.input.files?.[0];
        if (!file) throw new Error('choose a firmware bundle first');
        progress.hidden = false;
        progress.value = 0;
        const fields: Record<string, string> = version.value.trim() ? { version: version.value.trim() } : {};
        try {
          const res = await api.upload<VerifyResult>('/api/v1/ota/upload/verify', file, fields, (f) => {
            progress.value = Math.round(f * 100);
          });
          verified = res.data;
        } finally {
          progress.hidden = true;
        }
        const v = verified;
        fill(
          result,
          h(
            'dl',
            { class: 'kv' },
            h('dt', {}, 'File'),
            h('dd', {}, v.file.name),
            h('dt', {}, 'Size'),
            h('dd', {}, v.file.size),
            h('dt', {}, 'Version'),
            h('dd', {}, v.file.version),
            h('dt', {}, 'Kernel'),
            h('dd', {}, v.metadata.kernel),
            h('dt', {}, 'Signature'),
            h('dd', {}, v.metadata.signature),
            h('dt', {}, 'Hardware'),
            h('dd', {}, v.compatibility.hardware),
            h('dt', {}, 'Checksum'),
            h('dd', { class: 'mono' }, v.file.checksum),
          ),
        );
        deploy.hidden = false;
        roleGate(deploy, session.role, 'operator');
        if (v.compatibility.hardware !== 'compatible') {
          deploy.disabled = true;
          deployFeedback.failText('This image is not made for this gateway model: it cannot be deployed.');
        }
        return `Verified: ${v.file.name} (${v.file.version}) is signed and intact.`;
      },
      'Uploading…',
    ),
  );

  listen(deploy, 'click', () =>
    runAction(deploy, deployFeedback, async () => {
      if (!verified) throw new Error('verify an image first');
      const target = store.get('system').partitions.inactive.id;
      const res = await api.post<{ job_id: string; target_partition: string }>('/api/v1/ota/upload/deploy', {
        filename: verified.file.name,
        version: verified.file.version,
        target_partition: target,
        checksum: verified.file.checksum,
      });
      app.followJob(res.data.job_id);
      return `Deploying to slot ${res.data.target_partition} (job ${res.data.job_id}). Follow it in section 7.`;
    }),
  );

  return section(
    'section-upload',
    3,
    'Manual Upload Management',
    h('p', {}, 'Upload a signed firmware bundle, verify it, then deploy it to the inactive slot.'),
    drop.el,
    field('Version label (optional)', version, 'Shown for this image; the signed version still decides.'),
    h('div', { class: 'actions' }, verify, progress),
    verifyFeedback.el,
    result,
    h('div', { class: 'actions' }, deploy),
    deployFeedback.el,
    roleNote(session.role, 'operator'),
  );
}
