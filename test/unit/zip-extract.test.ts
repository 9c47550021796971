import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_ZIP_LIMITS,
  extractZip,
  inspectZip,
  isZipMagic,
  sniffZipFile,
  ZipRejectedError,
  type ZipRejection,
} from '../../services/zip-extract.js';
import { EMPTY_ZIP, lieAboutSize, makeZip, PNG_BYTES, renameEntry } from '../fixtures/zip/zips.js';
import { makeTempDir } from '../helpers/temp.js';

let dir: string;
beforeEach(() => {
  dir = makeTempDir('gantry-zip-');
});

function write(buf: Buffer, name = 'upload.zip'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, buf);
  return file;
}

async function rejection(buf: Buffer, limits = DEFAULT_ZIP_LIMITS): Promise<ZipRejectedError> {
  const dest = path.join(dir, 'out');
  try {
    await extractZip(write(buf), dest, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(ZipRejectedError);
    // Nothing of a refused archive is left behind.
    expect(fs.existsSync(dest)).toBe(false);
    return err as ZipRejectedError;
  }
  throw new Error('archive was accepted');
}

async function expectRejected(buf: Buffer, reason: ZipRejection, limits = DEFAULT_ZIP_LIMITS) {
  const err = await rejection(buf, limits);
  expect(err.reason).toBe(reason);
  return err;
}

describe('ZIP extraction', () => {
  it('should extract a well-formed archive with directories, files 0644', async () => {
    const zip = await makeZip({
      'gantry-config.json': '{"kind":"configuration"}',
      'keys/': { data: '', dir: true },
      'keys/vendor.pub.pem': 'pem',
      'tuf/root.json': '{}',
      'run.sh': { data: '#!/bin/sh\n', unixPermissions: 0o104755 },
    });
    const dest = path.join(dir, 'out');
    const result = await extractZip(write(zip), dest);
    expect(result.files.sort()).toEqual([
      'gantry-config.json',
      'keys/vendor.pub.pem',
      'run.sh',
      'tuf/root.json',
    ]);
    expect(result.directories).toEqual(['keys/']);
    expect(fs.readFileSync(path.join(dest, 'tuf/root.json'), 'utf8')).toBe('{}');
    // setuid and the executable bit are never taken from an upload.
    expect(fs.statSync(path.join(dest, 'run.sh')).mode & 0o7777).toBe(0o644);
  });

  it('should accept an empty archive (PK\\x05\\x06)', async () => {
    expect(isZipMagic(EMPTY_ZIP)).toBe(true);
    const result = await extractZip(write(EMPTY_ZIP), path.join(dir, 'out'));
    expect(result.files).toEqual([]);
  });

  it('should refuse a PNG renamed .zip, by content', async () => {
    const file = write(PNG_BYTES, 'picture.zip');
    expect(await sniffZipFile(file)).toBe(false);
    await expectRejected(PNG_BYTES, 'not_zip');
  });

  it('should refuse zip-slip ../ entries', async () => {
    const zip = renameEntry(await makeZip({ 'QQQx.txt': 'owned' }), 'QQQx.txt', '../x.txt');
    const err = await expectRejected(zip, 'unsafe_path');
    expect(err.message).toMatch(/escapes/);
    expect(fs.existsSync(path.join(dir, 'x.txt'))).toBe(false);
  });

  it('should refuse ../ in the middle of a path', async () => {
    const zip = renameEntry(await makeZip({ 'a/QQ/QQ/x': 'owned' }), 'a/QQ/QQ/x', 'a/../../x');
    await expectRejected(zip, 'unsafe_path');
  });

  it('should refuse absolute paths', async () => {
    const zip = renameEntry(await makeZip({ 'Qetc/cron': 'owned' }), 'Qetc/cron', '/etc/cron');
    const err = await expectRejected(zip, 'unsafe_path');
    expect(err.message).toMatch(/absolute/);
    const drive = renameEntry(await makeZip({ 'QQwin.ini': 'x' }), 'QQwin.ini', 'C:win.ini');
    await expectRejected(drive, 'unsafe_path');
  });

  it('should refuse backslashes in names', async () => {
    const zip = renameEntry(await makeZip({ 'a_b.txt': 'x' }), 'a_b.txt', 'a\\b.txt');
    const err = await expectRejected(zip, 'unsafe_path');
    expect(err.message).toMatch(/backslash/);
  });

  it('should refuse a symlink entry (unix mode in the external attributes)', async () => {
    const zip = await makeZip({ 'config/link': { data: '/etc/shadow', unixPermissions: 0o120777 } });
    const err = await expectRejected(zip, 'symlink');
    expect(err.entry).toBe('config/link');
  });

  it('should refuse device files and FIFOs', async () => {
    const zip = await makeZip({ fifo: { data: '', unixPermissions: 0o010644 } });
    await expectRejected(zip, 'special_file');
  });

  it('should refuse duplicate names', async () => {
    const zip = renameEntry(await makeZip({ 'a.txt': 'one', 'b.txt': 'two' }), 'b.txt', 'a.txt');
    const err = await expectRejected(zip, 'duplicate');
    expect(err.message).toMatch(/Duplicate ZIP entry: a.txt/);
  });

  it('should refuse names that differ only in case', async () => {
    const zip = await makeZip({ 'Config.json': 'one', 'config.json': 'two' });
    const err = await expectRejected(zip, 'duplicate');
    expect(err.message).toMatch(/differ only in case/);
  });

  it('should refuse an entry below a file of the same name', async () => {
    const zip = await makeZip({ hooks: 'a file', 'hooks/x.sh': 'below it' });
    await expectRejected(zip, 'duplicate');
  });

  it('should refuse a zip bomb by its compression ratio', async () => {
    const zip = await makeZip({ 'zeros.bin': Buffer.alloc(10 * 1024 * 1024) });
    expect(zip.length).toBeLessThan(100 * 1024);
    const err = await expectRejected(zip, 'ratio');
    expect(err.message).toMatch(/100:1/);
  });

  it('should refuse a zip bomb whose declared size lies, while inflating', async () => {
    // Declares 1000 bytes (below the ratio floor, within every limit), inflates to 10 MiB.
    const honest = await makeZip({ 'zeros.bin': Buffer.alloc(10 * 1024 * 1024), 'ok.txt': 'x' });
    const liar = lieAboutSize(honest, 'zeros.bin', 1000);
    expect(() => inspectZip(liar)).not.toThrow();
    const err = await expectRejected(liar, 'size_mismatch');
    expect(err.message).toMatch(/more than its declared 1000 bytes/);
  });

  it('should refuse an archive that declares more than the total limit', async () => {
    const zip = await makeZip({ 'a.bin': randomBytes(600 * 1024), 'b.bin': randomBytes(600 * 1024) });
    await expectRejected(zip, 'too_large', { ...DEFAULT_ZIP_LIMITS, maxTotalBytes: 1024 * 1024 });
  });

  it('should count actual bytes against the total limit when sizes lie', async () => {
    const honest = await makeZip({ 'a.bin': randomBytes(400 * 1024), 'b.bin': randomBytes(400 * 1024) });
    // Each claims to be bigger than it is, so the declared total passes and the real one does not.
    const liar = lieAboutSize(lieAboutSize(honest, 'a.bin', 1), 'b.bin', 500 * 1024);
    const err = await rejection(liar, { ...DEFAULT_ZIP_LIMITS, maxTotalBytes: 600 * 1024 });
    expect(['size_mismatch', 'too_large']).toContain(err.reason);
  });

  it('should refuse too many entries', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i <= DEFAULT_ZIP_LIMITS.maxEntries; i++) files[`f/${i}.txt`] = String(i);
    const err = await expectRejected(await makeZip(files), 'too_many_entries');
    expect(err.message).toMatch(/1001 entries; at most 1000/);
  });

  it('should refuse a truncated archive', async () => {
    const zip = await makeZip({ 'a.txt': 'hello' });
    await expectRejected(zip.subarray(0, zip.length - 10), 'corrupt');
  });

  it('should refuse an entry whose content fails its CRC-32', async () => {
    const zip = Buffer.from(await makeZip({ 'a.txt': 'hello world' }, { compression: 'STORE' }));
    const at = zip.indexOf(Buffer.from('hello world'));
    zip.write('HELLO', at);
    await expectRejected(zip, 'crc_mismatch');
  });
});
