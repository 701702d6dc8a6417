"""Pieces of one crystal joined again: across a cut or a crack the grey agrees, the union is
as convex as its parts, and the rims on the free faces agree (one crystal has one rim)."""

from __future__ import annotations

import numpy as np

from .hulls import hull_chains, row_extremes, union_hulls
from .labelops import (
    adjacent_pairs,
    contact_pixels,
    find_root,
    index_lut,
    label_medians,
    relabel,
    row_change_pixels,
)
from .morphology import ROWS_DISK, close_mask, distance_inside, near_mask
from .runs import label_runs, mask_runs, on_border, run_components, run_pixels


def rim_band(lab: np.ndarray, smooth: np.ndarray, band: tuple, close_px: float):
    """Labels and grey of the pixels in the rim band of every label: its free faces, inside.

    The band holds the pixels ``band`` = (near, far) pixels from the outside, the outside being
    the background once cracks and gaps narrower than about ``2 * close_px`` are closed and
    enclosed holes (inclusions) filled; pixels within ``near`` of another label (whose grey,
    or the grain-boundary seam's, the smoothing carries over) are left out.
    """
    closed = close_mask(lab > 0, close_px)
    # the parts of the background that reach the border, from their row runs
    row, c0, c1 = mask_runs(~closed)
    comp, n = run_components(row, c0, c1, lab.shape[1])
    sel = on_border(row, c0, c1, comp, n, lab.shape)[comp]
    out_px = np.zeros(lab.shape, dtype=bool)
    out_px.ravel()[run_pixels(row[sel], c0[sel], c1[sel], lab.shape[1])] = True
    if band[1] <= ROWS_DISK:  # two dilations are cheaper than the distance transform
        sel = near_mask(out_px, band[1]) & ~near_mask(out_px, band[0], strict=True) & (lab > 0)
    else:
        depth = distance_inside(~out_px)
        sel = (depth >= band[0]) & (depth <= band[1]) & (lab > 0)
    sel &= ~near_mask(contact_pixels(lab), band[0])
    return lab[sel], smooth[sel]


def merge_regions(
    lab: np.ndarray,
    smooth: np.ndarray,
    *,
    merge_grey: float,
    max_deficit: float,
    band_px: int,
    lenient: bool,
    small_px: float = 0.0,
    max_rounds: int = 6,
    return_areas: bool = False,
    rim: tuple | None = None,
    return_map: bool = False,
):
    """Join adjacent regions that are one crystal cut by a crack or by the splitting.

    Two regions are joined when the grey just behind their shared boundary agrees (median of
    the paired differences below ``merge_grey``) and their union is about as convex as they are
    (the convex hull of the union adds less than ``max_deficit`` of the smaller region beyond
    what their own hulls add): a crack through one crystal, not two crystals touching. A region
    smaller than ``small_px`` (too small to be a crystal of its own) needs only the grey. With
    ``lenient`` (background masked black), equal grey alone is enough. Rounds repeat on the
    joined regions until nothing changes. The boundary pixels, the grey behind them and the
    regions' row runs (their areas, and the exact convex hulls of their pixel corners) are
    measured once on the image; later rounds map them to the joined regions (the hull of a
    union is the hull of its parts' hull points), and all pairs of a round are judged at once.
    The accepted pairs of a round are then joined in order (closest rims first, then closest
    grey), and a join between groups already grown in the round is left to the next round
    when a rejected pair lies between them or their rims differ (:func:`_may_join`).
    With ``return_areas`` the areas of the joined labels (index = label) come back too, and
    with ``return_map`` also each input label's output label (index = input label).

    ``rim`` = ``(rim_labels, rim_grey, max_step, min_count, noise)`` adds a test on the
    crystals' free faces: one crystal has one rim, so two regions whose rims (the median of
    ``rim_grey`` over the samples of their ``rim_labels``, from :func:`rim_band`) differ by
    ``max_step`` plus two standard errors of the difference (from the ``noise`` of one sample)
    or more are two crystals (unless either has fewer than ``min_count`` rim samples, or is
    smaller than ``small_px``: a piece too small to be a crystal of its own is judged by the
    grey alone).
    """
    changes = row_change_pixels(lab)
    la0, lb0, pa, pb = adjacent_pairs(lab, row_changes=changes)
    if la0.size == 0:
        if return_areas and return_map:
            out, lut = relabel(lab, return_lut=True)
            return out, np.bincount(out.ravel()), lut
        out = relabel(lab)
        return (out, np.bincount(out.ravel())) if return_areas else out
    n = int(lab.max()) + 1
    rows, cols = lab.shape
    ra, ca = np.divmod(pa, cols)
    rb, cb = np.divmod(pb, cols)
    # k pixels behind each side of the boundary, away from the other side
    rra, cca = (
        np.clip(ra + (ra - rb) * band_px, 0, rows - 1),
        np.clip(ca + (ca - cb) * band_px, 0, cols - 1),
    )
    rrb, ccb = (
        np.clip(rb + (rb - ra) * band_px, 0, rows - 1),
        np.clip(cb + (cb - ca) * band_px, 0, cols - 1),
    )
    lab_fa, lab_fb = lab[rra, cca], lab[rrb, ccb]
    va_far, va_near = smooth[rra, cca], smooth[ra, ca]
    vb_far, vb_near = smooth[rrb, ccb], smooth[rb, cb]
    del ra, ca, rb, cb, rra, cca, rrb, ccb
    run_lab, run_row, run_c0, run_c1 = label_runs(lab, changes)
    areas0 = np.bincount(run_lab, weights=run_c1 - run_c0 + 1, minlength=n)
    # exact convex hulls of the labels that touch another (their outline points), and of
    # the groups joined in later rounds (from their members' hull points)
    touching = np.unique(np.concatenate([la0, lb0]))
    set_of = np.full(n, -1)
    set_of[touching] = np.arange(touching.size)
    pts0, hull0 = hull_chains(*row_extremes(run_lab, run_row, run_c0, run_c1, touching))
    pts, hull = pts0, hull0
    roots = np.arange(n)
    if rim is not None:
        # only the rims of labels that touch another can be asked for (labels the image
        # has lost have none)
        on = rim[0] < n
        on[on] = set_of[rim[0][on]] >= 0
        rim = (rim[0][on], rim[1][on], *rim[2:])
    for _ in range(max_rounds):
        a_id, b_id = roots[la0], roots[lb0]
        live = a_id != b_id
        if not live.any():
            break
        a_id, b_id = a_id[live], b_id[live]
        va = np.where(roots[lab_fa[live]] == a_id, va_far[live], va_near[live])
        vb = np.where(roots[lab_fb[live]] == b_id, vb_far[live], vb_near[live])
        lo_id, hi_id = np.minimum(a_id, b_id), np.maximum(a_id, b_id)
        diff = np.where(a_id < b_id, va - vb, vb - va)
        keys, inv = np.unique(lo_id.astype(np.int64) * n + hi_id, return_inverse=True)
        steps = np.abs(label_medians(diff, inv + 1, keys.size))  # pairs 1..n, all present
        a, b = np.divmod(keys[steps < merge_grey], n)
        if a.size == 0:
            break
        areas = np.bincount(roots, weights=areas0, minlength=n)
        small = np.minimum(areas[a], areas[b])
        ok = np.ones(a.size, dtype=bool)
        test = (small >= small_px) if not lenient else np.zeros(a.size, dtype=bool)
        if test.any():
            at, bt = a[test], b[test]
            sa, sb = set_of[at], set_of[bt]
            hull_a, hull_b = hull[sa], hull[sb]
            union = union_hulls(pts, sa, sb)
            extra = (union - areas[at] - areas[bt]) - (hull_a - areas[at]) - (hull_b - areas[bt])
            ok[test] = extra < max_deficit * small[test]
        if rim is not None and (ok & test).any():
            rl = roots[rim[0]]
            rim_med = np.r_[np.nan, label_medians(rim[1], rl, n - 1)]
            rim_n = np.bincount(rl, minlength=n)
            has = test & (rim_n[a] >= rim[3]) & (rim_n[b] >= rim[3])
            # the step must stand out of the noise of the two medians (2 standard errors)
            se = (
                1.2533
                * rim[4]
                * np.sqrt(1.0 / np.maximum(rim_n[a], 1) + 1.0 / np.maximum(rim_n[b], 1))
            )
            ok &= ~(has & (np.abs(rim_med[a] - rim_med[b]) >= rim[2] + 2.0 * se))
        parent = np.arange(n)
        changed = False
        rejected = np.sort(keys[~np.isin(keys, a[ok] * n + b[ok])])
        group_rim = None
        if rim is not None and not lenient:
            rl = roots[rim[0]]
            by = np.argsort(rl, kind="stable")
            ids = np.arange(n)
            group_rim = (
                np.searchsorted(rl[by], ids),
                np.searchsorted(rl[by], ids, side="right"),
                rim[1][by],
                *rim[2:5],
                areas,
                small_px,
            )
        # the pairs whose rims agree best (then whose grey agrees best) are joined first
        step_ok = steps[steps < merge_grey][ok]
        if group_rim is not None:
            med = np.r_[np.nan, label_medians(rim[1], roots[rim[0]], n - 1)]
            rim_diff = np.abs(med[a[ok]] - med[b[ok]])
            order = np.lexsort((step_ok, np.where(np.isnan(rim_diff), np.inf, rim_diff)))
        else:
            order = np.argsort(step_ok, kind="stable")
        groups: dict = {}
        for a_k, b_k in zip(a[ok][order].tolist(), b[ok][order].tolist(), strict=True):
            ra_, rb_ = find_root(parent, a_k), find_root(parent, b_k)
            if ra_ != rb_ and _may_join(groups, ra_, rb_, rejected, n, group_rim):
                keep_, gone = min(ra_, rb_), max(ra_, rb_)
                parent[gone] = keep_
                groups[keep_] = groups.get(keep_, [keep_]) + groups.pop(gone, [gone])
                changed = True
        if not changed:
            break
        new = np.array([find_root(parent, i) for i in range(n)])
        roots = new[roots]
        # hulls of the joined groups, one set per root (members' sets map to their root's)
        set_of = np.full(n, -1)
        group_roots = np.unique(roots[touching])
        set_of[group_roots] = np.arange(group_roots.size)
        g0 = set_of[roots[touching]][pts0[0]]
        pts, hull = hull_chains(g0, pts0[1], pts0[2], pts0[3])
    # one look-up: consecutive ids in the order of the joined regions' roots
    present = np.zeros(n, dtype=bool)
    present[roots[areas0 > 0]] = True
    present[0] = False
    rank = np.cumsum(present).astype(np.int32) * present
    out = index_lut(rank[roots], lab)
    if not return_areas:
        return out
    areas = np.bincount(rank[roots], weights=areas0, minlength=int(rank.max()) + 1)
    if return_map:
        return out, areas.astype(np.int64), rank[roots]
    return out, areas.astype(np.int64)


def _may_join(groups: dict, ra: int, rb: int, rejected: np.ndarray, n: int, rim) -> bool:
    """Whether the groups of regions with roots ``ra`` and ``rb`` may be joined in a round.

    The pairs of a round are judged on the regions as they were at its start, so a region
    accepted on its own by two neighbours would join them although their own pair was
    rejected (a small piece between two crystals; a piece of a crystal with too little rim
    of its own to be compared, next to its neighbour). Such a join is left to the next round
    (where the joined groups are judged) when a rejected pair (``rejected``: sorted keys
    ``lo * n + hi``) lies between the two groups, or when the groups' rims differ as the
    pairwise rim test would reject: ``rim`` = ``(start, end, grey, max_step, min_count,
    noise, areas, small_px)``, the rim samples of each region of the round being
    ``grey[start[i]:end[i]]``. ``groups`` maps each root to its members (absent: itself).
    """
    members, others = groups.get(ra, [ra]), groups.get(rb, [rb])
    if len(members) == 1 and len(others) == 1:
        return True  # judged as a pair already
    if rejected.size:
        ma, mb = np.asarray(members), np.asarray(others)
        lo, hi = np.minimum.outer(ma, mb), np.maximum.outer(ma, mb)
        at = np.searchsorted(rejected, (lo * n + hi).ravel())
        if (rejected[np.minimum(at, rejected.size - 1)] == (lo * n + hi).ravel()).any():
            return False
    if rim is None:
        return True
    start, end, grey, max_step, min_count, noise, areas, small_px = rim
    if min(areas[members].sum(), areas[others].sum()) < small_px:
        return True
    ga = np.concatenate([grey[start[i] : end[i]] for i in members])
    gb = np.concatenate([grey[start[i] : end[i]] for i in others])
    if ga.size < min_count or gb.size < min_count:
        return True
    se = 1.2533 * noise * np.sqrt(1.0 / ga.size + 1.0 / gb.size)
    return bool(abs(np.median(ga) - np.median(gb)) < max_step + 2.0 * se)
