/**
 * vitest globalSetup: runs once per `vitest run`, in the main process, so the "PostgreSQL half
 * skipped" notice is printed once instead of once per test file (test/support/engines.ts).
 */
export default function setup(): void {
  if (!(process.env.ROTOR_TEST_DATABASE_URL || process.env.ROTOR_TEST_POSTGRES_URL)) {
    console.info(
      'ROTOR_TEST_DATABASE_URL is not set: the PostgreSQL half of the store and end-to-end tests is skipped (.ci/run sets it)',
    );
  }
}
