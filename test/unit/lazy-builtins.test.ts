import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LAZY_BUILTINS, lazyBuiltinSource } from '../../scripts/server-bundle-plugins.js';

/**
 * The server bundle's stand-ins for the built-in modules it loads on first use
 * (scripts/server-bundle-plugins.ts): each must leave its module unloaded until an export is read, then
 * hand out the module's very exports, under the same names and enumerability.
 */
describe('the stand-in for a built-in module loaded on first use', () => {
  it.each(LAZY_BUILTINS)('should load node:%s on first access, and give its own exports', (name) => {
    const program = `
      const loaded = () => process.moduleLoadList.includes('NativeModule ${name}');
      const before = loaded();
      const module = { exports: {} };
      new Function('module', 'require', ${JSON.stringify(lazyBuiltinSource(name))})(module, require);
      const standIn = module.exports;
      const afterEvaluating = loaded();
      const keys = Object.keys(standIn);
      const afterListing = loaded();
      const real = require('node:${name}');
      const same = Object.getOwnPropertyNames(real).every((key) => standIn[key] === real[key]);
      process.stdout.write(JSON.stringify({ before, afterEvaluating, afterListing, same, keys, realKeys: Object.keys(real) }));
    `;
    const result = JSON.parse(execFileSync(process.execPath, ['-e', program], { encoding: 'utf8' })) as {
      before: boolean;
      afterEvaluating: boolean;
      afterListing: boolean;
      same: boolean;
      keys: string[];
      realKeys: string[];
    };
    expect(result.before).toBe(false);
    expect(result.afterEvaluating).toBe(false);
    expect(result.afterListing).toBe(false);
    expect(result.same).toBe(true);
    expect(result.keys).toEqual(result.realKeys);
  });
});
