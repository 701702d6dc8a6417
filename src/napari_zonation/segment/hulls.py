"""Exact convex hulls of label regions from their row runs (the row extremes' corners), for
many regions and their unions at once."""

from __future__ import annotations

import numpy as np

from .runs import packed_order


def hull_chains(gid: np.ndarray, side: np.ndarray, row: np.ndarray, col: np.ndarray):
    """Convex hulls of sets of points given as row extremes, all sets at once.

    Each set (``gid``) holds left points (``side`` 0: the leftmost pixel corner of a row) and
    right points (``side`` 1). The hull's left chain is the lower convex envelope of the left
    points along the rows (the right chain the upper envelope of the right points): points
    strictly inside a chord of their neighbours are dropped, all at once, until none is. Every
    dropped point is inside the hull of the set, so the result is exact. Returns the kept
    points ``(gid, side, row, col)``, sorted by set, then left chain top to bottom and right
    chain bottom to top (the hull's outline), and the hull area of each set.
    """
    sgn = np.where(side == 0, 1, -1)
    rs, cs = row * sgn, col * sgn
    whole = bool(gid.size) and np.all(rs == np.round(rs)) and np.all(cs == np.round(cs))
    if whole:
        # whole-number corner coordinates (always, from pixel runs): one packed sort
        r0, c0 = rs.min(), cs.min()
        spans = (cs.max() - c0 + 1, rs.max() - r0 + 1, 2, int(gid.max()) + 1)
        order = packed_order((cs - c0, rs - r0, side, gid), spans)
    else:
        order = np.lexsort((cs, rs, side, gid))
    gid, side, row, col = gid[order], side[order], row[order], col[order]
    # repeated points (corners shared by two sets of a union) would drop each other
    dup = np.r_[
        False,
        (gid[1:] == gid[:-1])
        & (side[1:] == side[:-1])
        & (row[1:] == row[:-1])
        & (col[1:] == col[:-1]),
    ]
    if dup.any():
        gid, side, row, col = gid[~dup], side[~dup], row[~dup], col[~dup]
    if whole:
        gid, side, row, col = _off_envelope(gid, side, row, col)
    while True:
        chain = gid.astype(np.int64) * 2 + side
        m = chain.size
        inner = np.zeros(m, dtype=bool)
        if m > 2:
            inner[1:-1] = (chain[1:-1] == chain[:-2]) & (chain[1:-1] == chain[2:])
        i = np.flatnonzero(inner)
        if i.size == 0:
            break
        r0, c0, r1, c1, r2, c2 = row[i - 1], col[i - 1], row[i], col[i], row[i + 1], col[i + 1]
        cross = (r1 - r0) * (c2 - c0) - (c1 - c0) * (r2 - r0)
        # left chain (rows going down): a hull vertex bulges to the left, cross > 0; the right
        # chain runs the other way round
        drop = cross <= 0
        if not drop.any():
            break
        keep = np.ones(m, dtype=bool)
        keep[i[drop]] = False
        gid, side, row, col = gid[keep], side[keep], row[keep], col[keep]
    # shoelace over each outline (consecutive points, and the closing edge)
    nxt = np.r_[1 : gid.size, 0]
    last = np.r_[gid[1:] != gid[:-1], True]
    first_of = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    nxt[last] = first_of
    term = row * col[nxt] - row[nxt] * col
    n_sets = int(gid.max()) + 1 if gid.size else 0
    area = 0.5 * np.abs(np.bincount(gid, weights=term, minlength=n_sets))
    return (gid, side, row, col), area


def _off_envelope(gid: np.ndarray, side: np.ndarray, row: np.ndarray, col: np.ndarray):
    """Drop the chain points of :func:`hull_chains` that cannot be envelope vertices.

    Along a chain (sorted, without repeats, whole-number coordinates) a point with an earlier
    point and a later one at least as far out (left for the left chain, right for the right
    one) lies on or inside their chord: the dropping of the concave points would remove it
    too. Found with running extremes from both ends (restarting at each chain), all at once.
    """
    if gid.size < 3:
        return gid, side, row, col
    chain = gid.astype(np.int64) * 2 + side
    cs = np.where(side == 0, col, -col)  # smaller is further out, on both chains
    start = np.r_[True, chain[1:] != chain[:-1]]
    end = np.r_[chain[1:] != chain[:-1], True]
    k = np.cumsum(start) - 1  # chain number, 0.. in order
    big = float(cs.max() - cs.min() + 1)
    # running minimum of the points before each point (restarting at each chain: the
    # offsets make every chain's values smaller than all earlier ones)
    before = np.minimum.accumulate(cs - k * big) + k * big
    after = (np.minimum.accumulate((cs + k * big)[::-1]) - (k * big)[::-1])[::-1]
    inside = np.zeros(gid.size, dtype=bool)
    inside[1:-1] = (before[:-2] <= cs[1:-1]) & (after[2:] <= cs[1:-1])
    inside &= ~start & ~end
    if not inside.any():
        return gid, side, row, col
    keep = ~inside
    return gid[keep], side[keep], row[keep], col[keep]


def row_extremes(run_lab, run_row, run_c0, run_c1, ids):
    """Corner points of the row extremes of labels ``ids`` (set index = position in ``ids``)."""
    sel = np.isin(run_lab, ids)
    lab, row, c0, c1 = run_lab[sel], run_row[sel], run_c0[sel], run_c1[sel]
    new = np.r_[True, (lab[1:] != lab[:-1]) | (row[1:] != row[:-1])]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, lab.size - 1]
    g = np.searchsorted(ids, lab[first])
    row = row[first].astype(np.float64)
    left, right = c0[first].astype(np.float64), c1[last] + 1.0
    gid = np.concatenate([g, g, g, g])
    side = np.repeat(np.array([0, 0, 1, 1]), g.size)
    rows = np.concatenate([row, row + 1, row, row + 1])
    cols = np.concatenate([left, left, right, right])
    return gid, side, rows, cols


def union_hulls(points, groups_a, groups_b):
    """Hull areas of the unions of point sets ``groups_a[k]`` and ``groups_b[k]``, for all k."""
    gid, side, row, col = points
    starts = np.searchsorted(gid, np.arange(int(gid.max()) + 2 if gid.size else 1))
    parts = []
    for groups in (groups_a, groups_b):
        lo, hi = starts[groups], starts[groups + 1]
        size = hi - lo
        pair = np.repeat(np.arange(groups.size), size)
        idx = np.repeat(lo - np.r_[0, np.cumsum(size)[:-1]], size) + np.arange(size.sum())
        parts.append((pair, idx))
    pair = np.concatenate([parts[0][0], parts[1][0]])
    idx = np.concatenate([parts[0][1], parts[1][1]])
    _, area = hull_chains(pair, side[idx], row[idx], col[idx])
    return area
