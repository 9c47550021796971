import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    // One owner per table: the job store (services/jobs.ts) for jobs and their history, the snapshot
    // store (services/actor-snapshots.ts) for statechart snapshots. Everything else goes through them.
    files: ['**/*.ts'],
    ignores: ['services/jobs.ts', 'services/actor-snapshots.ts', 'drizzle/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/drizzle/schema', '**/drizzle/schema.js'],
              importNames: ['jobs', 'jobTransitions', 'actorSnapshots'],
              message:
                'Only services/jobs.ts (JobStore) and services/actor-snapshots.ts (ActorSnapshotStore) touch these tables.',
            },
          ],
        },
      ],
    },
  },
);
