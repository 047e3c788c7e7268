/** A clock in milliseconds since the epoch; the domain never reads time itself. */
export type Clock = () => number;

/** A source of cryptographically strong random bytes; injected so tests can seed it. */
export type RandomSource = (length: number) => Uint8Array;
