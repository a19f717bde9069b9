import { defineConfig } from 'vitest/config';

// The site test drives a browser through every page and runs a network on SwiftShader: minutes, not seconds.
export default defineConfig({
  test: { include: ['src/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 60_000 },
});
