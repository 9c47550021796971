import { formatBytes, formatHms } from '../../core/format.js';

/**
 * The replies of operations that start or store something, in their documented shapes: the
 * services answer byte counts and seconds, these write "452 MB" and "00:15:00" and the URL to
 * follow. Fields pass through in the documented order.
 */

export function presentUploadVerified<
  R extends { file: { name: string; sizeBytes: number; checksum: string; version: string } },
>(r: R) {
  const { name, sizeBytes, checksum, version } = r.file;
  return { ...r, file: { name, size: formatBytes(sizeBytes), checksum, version } };
}

export function presentSnapshotStarted(r: {
  snapshot_id: string;
  status: 'creating';
  estimatedSeconds: number;
}) {
  return {
    snapshot_id: r.snapshot_id,
    status: r.status,
    estimated_duration: formatHms(r.estimatedSeconds),
    progress_url: `/api/v1/ota/progress?snapshot_id=${r.snapshot_id}`,
  };
}

export function presentDebugBundleStarted(r: {
  bundle_id: string;
  status: 'creating';
  estimatedBytes: number;
  download_url: string;
}) {
  return {
    bundle_id: r.bundle_id,
    status: r.status,
    estimated_size: formatBytes(r.estimatedBytes),
    download_url: r.download_url,
  };
}

export function presentFactoryResetStarted(r: {
  status: 'started';
  operation: 'factory_reset';
  estimatedSeconds: number;
  job_id: string;
}) {
  return {
    status: r.status,
    operation: r.operation,
    estimated_duration: formatHms(r.estimatedSeconds),
    job_id: r.job_id,
    progress_url: `/api/v1/ota/progress?job_id=${r.job_id}`,
  };
}

export function presentRecoveryImageStored(r: {
  uploaded: true;
  filename: string;
  sizeBytes: number;
  version: string;
  checksum: string;
}) {
  return {
    uploaded: r.uploaded,
    filename: r.filename,
    size: formatBytes(r.sizeBytes),
    version: r.version,
    checksum: r.checksum,
  };
}
