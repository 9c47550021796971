/**
 * Path rules shared by the ZIP manifests' schema (api/schemas/zip.ts) and the extractor
 * (services/zip-extract.ts): one rule for what an archive may name.
 */

/** Windows drive letters and UNC-ish names are absolute too, even if we never run there. */
const DRIVE = /^[A-Za-z]:/;

/**
 * A relative, normalized, '/'-separated path with no way out of the directory it is joined to.
 * Used for entry names and for the file references inside manifests.
 */
export function checkRelativePath(name: string, what = 'path'): string | null {
  if (name.length === 0) return `${what} is empty`;
  if (name.includes('\\')) return `${what} contains a backslash: ${JSON.stringify(name)}`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `${what} contains control characters`;
  if (name.startsWith('/') || DRIVE.test(name)) return `${what} is absolute: ${JSON.stringify(name)}`;
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  for (const seg of segments) {
    if (seg === '..') return `${what} escapes its directory: ${JSON.stringify(name)}`;
    if (seg === '' || seg === '.') return `${what} is not normalized: ${JSON.stringify(name)}`;
    if (Buffer.byteLength(seg) > 255) return `${what} has a component longer than 255 bytes`;
  }
  return null;
}
