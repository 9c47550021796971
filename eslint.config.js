import { readFileSync } from 'node:fs';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/*
 * The architecture, checked (README "Layout"). ESLint keeps one setting per rule for a file (a
 * later block replaces an earlier one), so each folder's block lists all of its import
 * restrictions: its layer's rule and the store ownership that applies everywhere. Import cycles
 * are refused by test/unit/import-cycles.test.ts.
 */

/** One owner per table: everything else goes through the job store and the snapshot store. */
const storeOwnership = {
  group: ['**/drizzle/schema', '**/drizzle/schema.js'],
  importNames: ['jobs', 'jobTransitions', 'actorSnapshots'],
  message:
    'Only services/jobs.ts (JobStore) and services/actor-snapshots.ts (ActorSnapshotStore) touch these tables.',
};
const STORES = ['services/jobs.ts', 'services/actor-snapshots.ts'];

const pureMachines = [
  {
    group: ['**/services/**', '**/server/**', '**/api/**', '**/rest-compat/**', '**/web/**'],
    message: 'machines/ are pure statecharts: effects are injected with .provide()',
  },
  {
    group: ['**/drizzle/**', '**/feed/**', '**/bundle/**', '**/cli/**'],
    message: 'machines/ are pure statecharts: effects are injected with .provide()',
  },
  {
    group: ['node:*', 'fs', 'net', 'http', 'https', 'child_process', 'timers', 'worker_threads'],
    message: 'machines/ have no fs/net/timers of their own',
  },
];

/** The edges reach the domain through the tRPC caller: every call validated, authorised, audited. */
const throughTheCaller = [
  {
    group: ['**/services/**'],
    message: 'rest-compat/ and web/ reach services through the tRPC caller (api/)',
  },
];

/** Services are the domain; the transports sit on top of them, never below. */
const domainBelowTransports = [
  {
    // Services own their words (core/vocabulary.ts, core/events.ts, core/settings-document.ts),
    // their request types and their replies in numbers; api/presenters/ write the documented shapes.
    regex: '^(\\.\\./)+(api|rest-compat|web|server)/',
    message: 'services/ never import api, rest-compat, web or server',
  },
];

/** delta/ is a domain library (hop and dynamic deltas): core/ and bundle/ below it, nothing above. */
const deltaLibrary = [
  {
    regex: '^(\\.\\./)+(services|api|rest-compat|web|server)/',
    message:
      'delta/ is a library: it may import core/ and bundle/, never services, api, rest-compat, web or server',
  },
];

/**
 * The server's code: what `npm run build` compiles (tsconfig.build.json), but the command-line
 * tools (cli/) and the browser's code (web/client/).
 */
const SERVER_CODE = JSON.parse(readFileSync(`${import.meta.dirname}/tsconfig.build.json`, 'utf8'))
  .include.filter((dir) => dir !== 'cli')
  .map((dir) => `${dir}/**/*.ts`);

const restrict = (...patterns) => ({ 'no-restricted-imports': ['error', { patterns }] });

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'data/**',
      'node_modules/**',
      'drizzle/migrations/**',
      'test-artifacts/**',
      'web/public/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Type-aware: a promise nobody awaits or catches is a failure nobody sees (an install that
    // died in the background, a click handler's rejection lost).
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/ban-ts-comment': 'error',
    },
  },
  { files: ['**/*.ts'], ignores: [...STORES, 'drizzle/**'], rules: restrict(storeOwnership) },
  { files: ['machines/**/*.ts'], rules: restrict(...pureMachines, storeOwnership) },
  {
    files: ['rest-compat/**/*.ts', 'web/*.ts'],
    // The one exception: an upload's bytes stream to the service's receiver while the multipart
    // body is read, before the procedure runs (tRPC takes no streamed file input); the procedure
    // then decides what is kept.
    ignores: ['rest-compat/uploads.ts'],
    rules: restrict(...throughTheCaller, storeOwnership),
  },
  {
    files: ['services/**/*.ts'],
    ignores: STORES,
    rules: restrict(...domainBelowTransports, storeOwnership),
  },
  { files: STORES, rules: restrict(...domainBelowTransports) },
  { files: ['delta/**/*.ts'], rules: restrict(...deltaLibrary, storeOwnership) },
  {
    // The server's code: the global `performance` loads perf_hooks and its nine modules on first
    // access (+0.2 MiB resident at idle); process.hrtime measures durations without them.
    files: SERVER_CODE,
    ignores: ['delta/dynamic/measure.ts', 'web/client/**'],
    rules: {
      'no-restricted-globals': [
        'error',
        {
          name: 'performance',
          message:
            'Use process.hrtime.bigint(): `performance` loads perf_hooks (README "How it runs in production").',
        },
      ],
    },
  },
);
