import { defineConfig } from 'vitest/config';

// `source` resolves workspace packages to their TypeScript sources; the ranks that mpirun starts run
// the built package (test/*.mjs import ../dist), so this package's test task depends on its build.
const conditions = ['source', 'module', 'node', 'import', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['source'] } },
  test: { include: ['src/**/*.test.ts'], testTimeout: 120_000 },
});
