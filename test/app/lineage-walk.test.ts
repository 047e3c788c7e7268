import { describe, expect, it } from 'vitest';
import { assertLineageStands, cascadeRevokedAncestor } from '../../src/app/authenticate.js';
import type { TokenRecord } from '../../src/domain/token.js';
import { tokenRecord } from '../domain/fixtures.js';

/** A repository of these tokens by id that counts its reads. */
function tokensOf(...records: TokenRecord[]) {
  const byId = new Map(records.map((t) => [t.id, t]));
  const reads: string[] = [];
  return {
    reads,
    findById: (id: string) => {
      reads.push(id);
      return Promise.resolve(byId.get(id));
    },
  };
}

/** The same, with the rows of `cached` also in an in-process cache (cachedById answers at once). */
/** Two tokens each naming the other as parent (cannot happen: parents are older), and one below them. */
function loopedLineage() {
  return {
    loop: [tokenRecord({ id: 'tok_x', parentId: 'tok_y' }), tokenRecord({ id: 'tok_y', parentId: 'tok_x' })],
    below: tokenRecord({ id: 'tok_below', parentId: 'tok_x' }),
  };
}

function cachedTokensOf(cached: readonly string[], ...records: TokenRecord[]) {
  const repo = tokensOf(...records);
  const byId = new Map(records.filter((t) => cached.includes(t.id)).map((t) => [t.id, t]));
  return { ...repo, cachedById: (id: string) => byId.get(id) };
}

describe('the lineage walk (docs/rotation.md, "Lineage and cascade")', () => {
  it('answers at once, without a promise or a read, for a token without a parent', () => {
    const repo = tokensOf();
    const root = tokenRecord({ id: 'tok_root', parentId: null });
    expect(cascadeRevokedAncestor(repo, root)).toBeUndefined();
    expect(assertLineageStands(repo, root)).toBeUndefined();
    expect(repo.reads).toEqual([]);
  });

  it('finds the nearest ancestor a cascade reached, reading each ancestor once', async () => {
    const grand = tokenRecord({ id: 'tok_grand', parentId: null, cascadeRevokedAt: 1_000 });
    const parent = tokenRecord({ id: 'tok_parent', parentId: 'tok_grand' });
    const child = tokenRecord({ id: 'tok_child', parentId: 'tok_parent' });
    const repo = tokensOf(grand, parent, child);
    expect((await cascadeRevokedAncestor(repo, child))?.id).toBe('tok_grand');
    expect(repo.reads).toEqual(['tok_parent', 'tok_grand']);
    await expect(assertLineageStands(repo, child)).rejects.toMatchObject({ code: 'token_revoked' });
  });

  it('stands when no ancestor was reached, and when an ancestor is gone (deleted by retention)', async () => {
    const parent = tokenRecord({ id: 'tok_parent', parentId: 'tok_deleted' });
    const child = tokenRecord({ id: 'tok_child', parentId: 'tok_parent' });
    const repo = tokensOf(parent, child);
    expect(await cascadeRevokedAncestor(repo, child)).toBeUndefined();
    await expect(assertLineageStands(repo, child)).resolves.toBeUndefined();
  });

  it('fails closed on a loop that cannot happen (a parent of itself, or a cycle further up)', async () => {
    const self = tokenRecord({ id: 'tok_a', parentId: 'tok_a' });
    expect((await cascadeRevokedAncestor(tokensOf(self), self))?.id).toBe('tok_a');
    const p1 = tokenRecord({ id: 'tok_p1', parentId: 'tok_p1' });
    const child = tokenRecord({ id: 'tok_child', parentId: 'tok_p1' });
    const repo = tokensOf(p1, child);
    expect((await cascadeRevokedAncestor(repo, child))?.id).toBe('tok_child');
    expect(repo.reads).toEqual(['tok_p1']);
    const { loop, below } = loopedLineage();
    const cycle = tokensOf(...loop, below);
    expect((await cascadeRevokedAncestor(cycle, below))?.id).toBe('tok_below');
    expect(cycle.reads).toEqual(['tok_x', 'tok_y']);
  });

  it('walks cached ancestors at once (no promise when none was reached) and reads from the first one not cached', async () => {
    const grand = tokenRecord({ id: 'tok_grand', parentId: null, cascadeRevokedAt: 1_000 });
    const parent = tokenRecord({ id: 'tok_parent', parentId: 'tok_grand' });
    const child = tokenRecord({ id: 'tok_child', parentId: 'tok_parent' });
    const standing = tokenRecord({ id: 'tok_standing', parentId: null });
    const below = tokenRecord({ id: 'tok_below', parentId: 'tok_standing' });
    const allCached = cachedTokensOf(['tok_standing'], standing, below);
    expect(cascadeRevokedAncestor(allCached, below)).toBeUndefined();
    expect(assertLineageStands(allCached, below)).toBeUndefined();
    expect(allCached.reads).toEqual([]);
    const reached = cachedTokensOf(['tok_parent', 'tok_grand'], grand, parent, child);
    expect((await cascadeRevokedAncestor(reached, child))?.id).toBe('tok_grand');
    expect(reached.reads).toEqual([]);
    const partly = cachedTokensOf(['tok_parent'], grand, parent, child);
    expect((await cascadeRevokedAncestor(partly, child))?.id).toBe('tok_grand');
    expect(partly.reads).toEqual(['tok_grand']);
    await expect(assertLineageStands(partly, child)).rejects.toMatchObject({ code: 'token_revoked' });
  });

  it('fails closed on a loop through cached ancestors too', async () => {
    const { loop, below } = loopedLineage();
    const cycle = cachedTokensOf(['tok_x', 'tok_y'], ...loop, below);
    expect((await cascadeRevokedAncestor(cycle, below))?.id).toBe('tok_below');
    expect(cycle.reads).toEqual([]);
    // Half cached: the walk carries what it has seen into the reads.
    const half = cachedTokensOf(['tok_x'], ...loop, below);
    expect((await cascadeRevokedAncestor(half, below))?.id).toBe('tok_below');
    expect(half.reads).toEqual(['tok_y']);
  });
});
