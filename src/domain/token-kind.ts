/** Whom a token stands for (docs/design.md, Domain). */
export const TOKEN_KINDS = ['personal', 'project', 'group', 'service_account'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/**
 * Kind-specific secret prefixes, so secret scanners can recognise a leaked Rotor token and tell
 * which kind it is (the same idea as GitHub's `ghp_` or GitLab's `glpat-`).
 */
export const SECRET_PREFIX: Readonly<Record<TokenKind, string>> = {
  personal: 'rtr_pat_',
  project: 'rtr_prj_',
  group: 'rtr_grp_',
  service_account: 'rtr_sa_',
};

/** Type guard for values read from storage or the wire. */
export function isTokenKind(value: string): value is TokenKind {
  return (TOKEN_KINDS as readonly string[]).includes(value);
}
