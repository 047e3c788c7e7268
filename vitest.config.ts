import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time. vitest's default is availableParallelism() - 1, which is one file
    // at a time on the 2-core CI machine, though most files spend much of their time waiting on
    // servers, child processes and PostgreSQL (and every file pays its own imports in a fresh
    // fork). Tests never assume they have the machine to themselves: each server has its own
    // ephemeral ports, data directory and scratch database (test/support/server.ts, engines.ts).
    maxWorkers: 2,
    globalSetup: ['test/support/global-setup.ts'],
  },
});
