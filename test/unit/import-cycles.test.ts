import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findImportCycles } from '../../scripts/import-cycles.js';
import { makeTempDir } from '../helpers/temp.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('import cycles', () => {
  it('should find none in the repository, type-only imports included (issue 12.5)', () => {
    expect(findImportCycles(REPO)).toEqual([]);
  });

  it('should find a type-only cycle and a three-file runtime cycle, and not a plain chain', () => {
    const root = makeTempDir('gantry-cycles-');
    const write = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), text);
    };
    write('server/deps.ts', "import { ports } from './ports.js';\nexport interface Deps { n: number }\n");
    write(
      'server/ports.ts',
      "import type { Deps } from './deps.js';\nexport const ports = (d: Deps) => d;\n",
    );
    write('a/one.ts', "import { two } from '../b/index.js';\nexport const one = 1;\n");
    write('b/index.ts', "export { three as two } from '../c/three.js';\n");
    write('c/three.ts', "import { one } from '../a/one.js';\nexport const three = one;\n");
    write('chain/x.ts', "import { y } from './y.js';\nexport const x = y;\n");
    write('chain/y.ts', 'export const y = 1;\n');
    const cycles = findImportCycles(root).sort((p, q) => p.length - q.length);
    expect(cycles).toEqual([
      ['server/deps.ts', 'server/ports.ts'],
      ['a/one.ts', 'b/index.ts', 'c/three.ts'],
    ]);
  });
});
