import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { waitForJob, describeProgress } from './jobs.js';
import { CliFailure, type Outputs, type Run, type Session } from './session.js';

type Verified = Outputs['updates']['verifyUpload'];

/** A quoted multipart parameter value: no quotes or line breaks can end the header early. */
function quoted(value: string): string {
  return `"${value.replace(/[\r\n]/g, ' ').replace(/"/g, '%22')}"`;
}

/**
 * The multipart body as a stream (preamble, the file, epilogue) and its exact length, so a bundle
 * of any size is sent without being read into memory and without chunked encoding.
 */
function multipartBody(file: string, fields: Record<string, string>, onBytes: (n: number) => void) {
  const boundary = `----gantry-${randomBytes(12).toString('hex')}`;
  const parts = Object.entries(fields).map(
    ([name, value]) =>
      `--${boundary}\r\nContent-Disposition: form-data; name=${quoted(name)}\r\n\r\n${value}\r\n`,
  );
  const preamble = Buffer.from(
    `${parts.join('')}--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename=${quoted(path.basename(file))}\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const epilogue = Buffer.from(`\r\n--${boundary}--\r\n`);
  const size = fs.statSync(file).size;
  async function* chunks() {
    yield preamble;
    for await (const chunk of fs.createReadStream(file)) {
      onBytes((chunk as Buffer).length);
      yield chunk as Buffer;
    }
    yield epilogue;
  }
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    length: preamble.length + size + epilogue.length,
    fileSize: size,
    stream: Readable.from(chunks()),
  };
}

async function readJson(res: IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of res) text += String(chunk);
  try {
    return JSON.parse(text);
  } catch {
    throw new CliFailure('BAD_RESPONSE', `HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
  }
}

interface Envelope {
  success: boolean;
  data?: Verified;
  error?: { code: string; message: string };
}

/** POST /api/v1/ota/upload/verify (tRPC carries no files), streaming FILE as the `file` part. */
async function uploadVerify(s: Session, file: string, label: string | undefined): Promise<Verified> {
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) {
    throw new CliFailure('FILE_NOT_FOUND', `${file} is not a readable file`);
  }
  const token = s.token;
  const bar =
    s.io.interactive && !s.opts.json
      ? new cliProgress.SingleBar(
          { format: 'upload [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr },
          cliProgress.Presets.shades_classic,
        )
      : null;
  let sent = 0;
  const body = multipartBody(file, label ? { version: label } : {}, (n) => bar?.update((sent += n)));
  const url = new URL('/api/v1/ota/upload/verify', s.opts.server);
  bar?.start(body.fileSize, 0);
  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, {
        method: 'POST',
        headers: {
          'content-type': body.contentType,
          'content-length': body.length,
          'x-gateway-id': s.opts.gateway,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      });
      req.on('response', resolve).on('error', reject);
      // A refusal (auth, space) may answer before the body is sent: the answer is what counts.
      pipeline(body.stream, req).catch(reject);
    });
    const envelope = (await readJson(res)) as Envelope;
    if (!envelope.success || !envelope.data) {
      throw new CliFailure(
        envelope.error?.code ?? `HTTP_${res.statusCode}`,
        envelope.error?.message ?? 'upload failed',
      );
    }
    return envelope.data;
  } finally {
    bar?.stop();
  }
}

export function registerUpload(program: Command, run: Run): void {
  program
    .command('upload')
    .description('upload a signed bundle, have the gateway verify it, optionally deploy it')
    .argument('<file>', 'signed .bundle file')
    .option('--version <label>', 'label shown for this image (the signed version still decides)')
    .option('--deploy', 'write the verified image to the inactive slot')
    .addOption(
      new Option('--target <slot>', 'slot to deploy to (default: the inactive one)').choices(['A', 'B']),
    )
    .option('--wait', 'with --deploy: follow the job until it is downloaded')
    .action(
      (
        file: string,
        o: { version?: string; deploy?: boolean; target?: 'A' | 'B'; wait?: boolean },
        cmd: Command,
      ) =>
        run(cmd, async (s) => {
          if (o.wait && !o.deploy) throw new CliFailure('VALIDATION_ERROR', '--wait needs --deploy');
          const upload = await uploadVerify(s, file, o.version);
          if (!o.deploy) {
            return s.print(upload, (u) => [
              `Verified ${u.file.name}: ${u.file.version}, ${u.file.size}, kernel ${u.metadata.kernel}, hardware ${u.compatibility.hardware}`,
              `  ${u.file.checksum}`,
            ]);
          }
          const deploy = await s.api.updates.deploy.mutate({
            filename: upload.file.name,
            checksum: upload.file.checksum,
            version: o.version,
            target_partition: o.target,
          });
          const progress = o.wait ? await waitForJob(s, deploy.job_id, ['downloaded', 'complete']) : null;
          s.print({ upload, deploy, progress }, (r) => [
            `Verified ${r.upload.file.name} (${r.upload.file.version}, ${r.upload.file.size}); deploying to slot ${r.deploy.target_partition}: job ${r.deploy.job_id}`,
            ...(r.progress
              ? [...describeProgress(r.progress), `Install it with: gantry install ${r.deploy.job_id}`]
              : [`Follow it with: gantry progress ${r.deploy.job_id}`]),
          ]);
        }),
    );
}
