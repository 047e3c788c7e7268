/** A usage mistake; the CLI prints it with the usage text and exits 2. Its own file so every command parser can throw it without importing another command. */
export class UsageError extends Error {}
