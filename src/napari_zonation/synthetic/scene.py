"""Seeded synthetic BSE thin sections (:func:`make_thin_section`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import disk, polygon

from .. import _synthetic_features as feat
from .._synthetic_features import glass_canvas
from .geometry import _crystal_polygon, _disc_vesicle, _draw_shapes, _lath
from .truth import SyntheticSample, _truth_table
from .zoning import (
    _PHASE_WEIGHTS,
    GREY,
    PHASES,
    ZONING_TYPES,
    _keep_contrast,
    _thin_rim_zoning,
    random_zoning,
    rim_at_glass_zoning,
)


def make_thin_section(
    shape: tuple[int, int] = (768, 768),
    *,
    n_crystals: int = 20,
    pixel_size_um: float = 1.0,
    noise: float = 0.02,
    bit_depth: int = 8,
    seed: int = 0,
    phases: tuple[str, ...] = PHASES,
    zoning_types: tuple[str, ...] = ZONING_TYPES,
    size_um: tuple[float, float] = (90.0, 260.0),
    touching_fraction: float = 0.25,
    crack_fraction: float = 0.5,
    inclusion_fraction: float = 0.3,
    n_vesicles: int | None = None,
    microlite_fraction: float = 0.2,
    probe_fwhm_um: float = 1.2,
    drift: float = 0.03,
    groundmass: str = "microlite",
    glass_grey: float | None = None,
    glass_texture: float = 0.0,
    vesicle_style: str = "auto",
    vesicle_contact: float = 0.0,
    epoxy_fraction: float = 0.0,
    plucked_holes: float = 0.0,
    faint_rims: float = 0.0,
    glass_zoned_laths: float = 0.0,
    thin_rims: float = 0.0,
    edge_halo: float = 0.0,
    crack_contacts: float = 0.0,
    needles: float = 0.0,
    scan_lines: int = 0,
    data_bar: bool = False,
    jpeg_quality: int | None = None,
) -> SyntheticSample:
    """Make a seeded synthetic BSE image of a porphyritic volcanic thin section.

    The options after ``drift`` add what real BSE images carry (``docs/synthetic.md``); they
    are all off by default, so a seed gives the same image whether or not they exist. Each
    draws from its own random stream: the same seed with and without an option gives the same
    crystals (the groundmass option included), only what the option adds differs.
    :data:`SCENE_KINDS` holds ready-made sets of them.

    Parameters
    ----------
    shape : (int, int)
        Image shape in pixels (rows, cols).
    n_crystals : int
        Phenocrysts to place (some are dropped if no room is found).
    pixel_size_um : float
        Micrometres per pixel; crystal, microlite and vesicle sizes are physical.
    noise : float
        Detector noise, 1-sigma as a fraction of full scale.
    bit_depth : {8, 16}
        Output dtype uint8 or uint16.
    seed : int
        Seed; the same seed gives the same image.
    phases, zoning_types : tuple of str
        Phases and zoning types to draw from.
    size_um : (float, float)
        Range of crystal lengths (um).
    touching_fraction : float
        Fraction of crystals placed touching an earlier one (glomerocrysts).
    crack_fraction : float
        Probability that an olivine (half of it for pyroxene and plagioclase) is cracked.
    inclusion_fraction : float
        Probability that a crystal carries melt or oxide inclusions.
    n_vesicles : int, optional
        Vesicles to place (default scales with the image area).
    microlite_fraction : float
        Area fraction of the groundmass covered by microlites (``groundmass="microlite"``).
    probe_fwhm_um : float
        Full width at half maximum of the Gaussian probe blur (um).
    drift : float
        Largest relative change of brightness across the field (beam-current drift).
    groundmass : {"microlite", "glass"}
        A glass with a mat of plagioclase, pyroxene and oxide microlites (default), or smooth
        glass with faint schlieren and no microlite mat.
    glass_grey : float, optional
        Grey of the glass (fraction of full scale). Default 0.42; 0.62 (an Fe-rich basaltic
        glass, as bright as Fo83 olivine) with ``faint_rims``; 0.33 (a dacitic glass inside
        plagioclase's range) with ``glass_zoned_laths``. A crystal not drawn for those two
        options has its zoning shifted when its core would lie within 0.03 of the glass.
    glass_texture : float
        1-sigma amplitude (fraction of full scale) of a fine speckle of ~1.5 um quench
        crystallites in the glass: a change of texture at a crystal's edge (default 0: none).
    vesicle_style : {"auto", "disc", "real"}
        ``"disc"``: near-black discs with a bright crescent; ``"real"``: a dark interior, the
        bright floor of the cavity seen through the section (a ramp over every grey level),
        a polished wall and a bright halo one or two pixels wide outside the rim.
        ``"auto"``: real in a glass groundmass, disc otherwise.
    vesicle_contact : float
        Fraction of the vesicles placed against a crystal (the crystal loses the pixels the
        disc covers, at most about a pixel deep).
    epoxy_fraction : float
        Area fraction of black mounting epoxy (grey 0-0.03), in smooth regions a few hundred
        micrometres across that cut the crystals they cover.
    plucked_holes : float
        Plucked holes (near-black, 2-12 um radius, irregular) per square millimetre, each in
        the groundmass or wholly inside a crystal (where it keeps the crystal's label, as an
        inclusion does).
    faint_rims : float
        Fraction of olivine and clinopyroxene crystals whose Fe-rich rim zone has the glass's
        grey within 0.5-4 DN (8 bits): the boundary shows only as that faint step, a thin dark
        line just outside the crystal, a thin bright line on its outermost pixel, the facet's
        straight edge or the glass's texture (``glass_texture``).
    glass_zoned_laths : float
        Fraction of plagioclase crystals zoned across the glass's grey: a rim darker than the
        glass over a brighter core, an outer zone at the glass grey over a darker core, or
        both (see :func:`rim_at_glass_zoning`).
    thin_rims : float
        Fraction of crystals (not drawn for the two options above) whose zoning is a real
        rim zone one to two pixels wide over an unzoned core, 0.03-0.07 of full scale
        brighter or darker, with a sharp step (``sqrt_dt_um`` a quarter pixel): what an edge
        halo must not be taken for (truth column ``thin_rim``).
    edge_halo : float
        Amplitude (fraction of full scale) of the bright edge halo on the outermost one or two
        pixels of every crystal at its free faces (0.5-1 x this per crystal); the halo lies
        inside the true outline. Real images: about 0.25-0.5.
    crack_contacts : float
        Fraction of the grain contacts between touching crystals drawn as an epoxy-filled crack
        (grey 0.04-0.14, two pixels wide at 1 um/px or finer) instead of the thin seam.
    needles : float
        Area fraction of the field covered by needle microlites and microlite clusters
        (sprays and clumps up to ~70 um across), which are groundmass, not crystals.
    scan_lines : int
        Number of bright horizontal scan-line or charging bands (1-4 rows, +3-18 % of full
        scale), with a 0.3 % gain jitter per row.
    data_bar : bool
        Burn the instrument's data bar into the bottom rows (about 6 % of the height):
        crystals and vesicles under it are cut from the truth.
    jpeg_quality : int, optional
        Compress the image as a baseline JPEG of this quality (1-100) would: 8 x 8 block
        artefacts and lost fine detail (default: none).

    Returns
    -------
    SyntheticSample
    """
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    if groundmass not in ("microlite", "glass"):
        raise ValueError("groundmass must be 'microlite' or 'glass'")
    if vesicle_style not in ("auto", "disc", "real"):
        raise ValueError("vesicle_style must be 'auto', 'disc' or 'real'")
    if glass_grey is None:
        if faint_rims > 0 and glass_zoned_laths > 0:
            raise ValueError(
                "faint_rims needs a bright glass (olivine rims, about 0.62) and "
                "glass_zoned_laths a dark one (inside plagioclase's 0.28-0.37): give "
                "glass_grey, or use one of the two options"
            )
        glass_grey = 0.62 if faint_rims > 0 else 0.33 if glass_zoned_laths > 0 else GREY["glass"]
    glass = float(glass_grey)
    if vesicle_style == "auto":
        vesicle_style = "real" if groundmass == "glass" else "disc"
    rng = np.random.default_rng(seed)
    H, W = int(shape[0]), int(shape[1])
    px = float(pixel_size_um)
    full_scale = 255.0 if bit_depth == 8 else 65535.0
    if groundmass == "glass" or glass_texture > 0:
        canvas = glass_canvas((H, W), glass, px, feat.stream(seed, "glass"), glass_texture)
    else:
        canvas = np.full((H, W), glass, dtype=np.float64)

    # --- groundmass microlites (drawn first; crystals and vesicles cover them). A glass
    # groundmass draws them on a scratch canvas, so that the crystals stay the same.
    area_um2 = H * W * px * px
    n_plag = int(microlite_fraction * 0.6 * area_um2 / (2.5 * 15.0))
    n_px = int(microlite_fraction * 0.25 * area_um2 / 12.0)
    n_ox = int(microlite_fraction * 0.15 * area_um2 / 9.0)
    mat = canvas if groundmass == "microlite" else np.empty_like(canvas)
    _draw_shapes(
        mat,
        rng,
        n_plag,
        lambda: _lath(rng, rng.uniform(8, 22) / px, rng.uniform(1.5, 3.5) / px),
        GREY["plagioclase_microlite"],
    )
    _draw_shapes(
        mat,
        rng,
        n_px,
        lambda: _lath(rng, rng.uniform(3, 6) / px, rng.uniform(2, 4) / px),
        GREY["pyroxene_microlite"],
    )
    _draw_shapes(
        mat,
        rng,
        n_ox,
        lambda: _lath(rng, rng.uniform(2, 4) / px, rng.uniform(2, 4) / px),
        GREY["oxide"],
    )
    del mat
    needle_mask = None
    if needles > 0:
        needle_mask = feat.draw_needles(
            canvas,
            px,
            needles,
            (GREY["plagioclase_microlite"], GREY["pyroxene_microlite"]),
            feat.stream(seed, "needles"),
        )

    # --- place phenocrysts
    rng_z = feat.stream(seed, "zoning")
    rng_t = feat.stream(seed, "thin")
    labels = np.zeros((H, W), dtype=np.int32)
    occupied = np.zeros((H, W), dtype=bool)
    gap = max(1, int(round(8.0 / px)))
    crystals = []  # (label, phase, zoning, rr, cc, values, cracked, n_incl)
    lo, hi = size_um
    hi = min(hi, 0.6 * min(H, W) * px)
    lo = min(lo, 0.8 * hi)
    weights = np.array([_PHASE_WEIGHTS.get(p, 1.0) for p in phases])
    weights = weights / weights.sum()
    next_label = 1
    attempts = 0
    while len(crystals) < n_crystals and attempts < 60 * n_crystals:
        attempts += 1
        phase = str(rng.choice(phases, p=weights))
        length = rng.uniform(lo, hi) / px
        verts = _crystal_polygon(phase, length, rng)
        touching = bool(crystals) and rng.random() < touching_fraction
        if touching:
            host = crystals[int(rng.integers(len(crystals)))]
            hc = np.array([host["rr"].mean(), host["cc"].mean()])
            ang = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.sin(ang), np.cos(ang)])
            ext_h = np.max(np.abs((np.stack([host["rr"], host["cc"]], 1) - hc) @ direction))
            ext_n = np.max(np.abs(verts @ direction))
            centre = hc + direction * (ext_h + ext_n) * rng.uniform(0.8, 0.9)
        else:
            centre = rng.uniform([0, 0], [H, W])
        v = verts + centre
        r0, c0 = np.floor(v.min(0)).astype(int) - 2
        r1, c1 = np.ceil(v.max(0)).astype(int) + 3
        local = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        rr, cc = polygon(v[:, 0] - r0, v[:, 1] - c0, shape=local.shape)
        local[rr, cc] = True
        rr_g, cc_g = rr + r0, cc + c0
        inside = (rr_g >= 0) & (rr_g < H) & (cc_g >= 0) & (cc_g < W)
        if inside.sum() < 0.3 * rr.size or inside.sum() * px * px < 1500:
            continue
        rr_l, cc_l = rr[inside], cc[inside]
        rr_g, cc_g = rr_g[inside], cc_g[inside]
        occ = occupied[rr_g, cc_g]
        if touching:
            # must overlap its host a little and nothing else
            host_hit = labels[rr_g, cc_g] == host["label"]
            other = occ & ~host_hit
            frac = host_hit.mean()
            if other.any() or not (0.01 < frac < 0.2):
                continue
            # host must keep a good part of itself
            if host_hit.sum() > 0.3 * host["rr"].size:
                continue
        else:
            if occ.any():  # cheap test first: the crystal itself overlaps another
                continue
            grown = ndi.binary_dilation(local, iterations=gap)
            gr, gc = np.nonzero(grown)
            gr, gc = gr + r0, gc + c0
            ok = (gr >= 0) & (gr < H) & (gc >= 0) & (gc < W)
            if occupied[gr[ok], gc[ok]].any():
                continue
        # distance to this crystal's own boundary, on its full polygon (also beyond the edge)
        dist_um = ndi.distance_transform_edt(local) * px
        zt = str(rng.choice(zoning_types))
        depth = float(dist_um.max())
        z = random_zoning(zt, phase, depth, rng)
        rim_at_glass = False
        share = glass_zoned_laths if phase == "plagioclase" else faint_rims
        if share > 0 and rng_z.random() < share:
            special = rim_at_glass_zoning(phase, depth, glass, rng_z)
            if special is not None:
                z, rim_at_glass = special, True
        thin = False
        if not rim_at_glass and thin_rims > 0 and rng_t.random() < thin_rims:
            z, thin = _thin_rim_zoning(phase, z.core_grey, px, rng_t), True
        if not rim_at_glass:
            z = _keep_contrast(z, phase, glass)
        values = z.grey(dist_um[rr_l, cc_l])
        lab = next_label
        next_label += 1
        labels[rr_g, cc_g] = lab
        occupied[rr_g, cc_g] = True
        canvas[rr_g, cc_g] = values
        if touching:  # the newcomer overlaps its host: the host loses those pixels
            host["rr"], host["cc"] = np.nonzero(labels == host["label"])
        crystals.append(
            {
                "label": lab,
                "phase": phase,
                "zoning": z,
                "rr": rr_g,
                "cc": cc_g,
                "depth": depth,
                "touching_host": host["label"] if touching else 0,
                "cracked": False,
                "n_incl": 0,
                "local": (local, dist_um, r0, c0),
                "rim_at_glass": rim_at_glass,
                "rim_cue": "",
                "thin_rim": thin,
            }
        )

    # --- inclusions and cracks, inside their crystal (they keep its label)
    for cr in crystals:
        local, dist_um, r0, c0 = cr["local"]
        lab = cr["label"]
        if rng.random() < inclusion_fraction:
            n_incl = int(rng.integers(1, 4))
            deep = np.argwhere(dist_um > 12.0)
            for _ in range(n_incl):
                if deep.size == 0:
                    break
                r, c = deep[int(rng.integers(len(deep)))] + [r0, c0]
                rad = rng.uniform(2.5, 6.0) / px
                dr, dc = disk((r, c), rad, shape=(H, W))
                inside = labels[dr, dc] == lab
                val = glass if rng.random() < 0.7 else GREY["oxide"]
                canvas[dr[inside], dc[inside]] = val
                cr["n_incl"] += 1
        p_crack = crack_fraction if cr["phase"] == "olivine" else 0.5 * crack_fraction
        if rng.random() < p_crack:
            n_cracks = int(rng.integers(1, 3))
            for _ in range(n_cracks):
                # a straight crack across the crystal, through a random interior point
                k = int(rng.integers(cr["rr"].size))
                pr, pc = cr["rr"][k], cr["cc"][k]
                ang = rng.uniform(0, np.pi)
                t = np.arange(-400, 400) / max(px, 0.25) * 0.5
                lr = np.round(pr + t * np.sin(ang)).astype(int)
                lc = np.round(pc + t * np.cos(ang)).astype(int)
                ok = (lr >= 0) & (lr < H) & (lc >= 0) & (lc < W)
                lr, lc = lr[ok], lc[ok]
                on = labels[lr, lc] == lab
                mine = np.zeros((H, W), dtype=bool)
                mine[lr[on], lc[on]] = True
                if px < 1.0:  # cracks are ~1-1.5 um wide
                    mine = ndi.binary_dilation(mine, iterations=max(1, int(0.5 / px)))
                mine &= labels == lab
                canvas[mine] = GREY["crack"]
                cr["cracked"] = True

    # --- grain boundaries between touching crystals: a thin darker seam, or a crack
    seam = np.zeros((H, W), dtype=bool)
    crack_pairs: set[tuple[int, int]] = set()
    crack_seam = np.zeros((H, W), dtype=np.float64) if crack_contacts > 0 else None
    pair_keys = []
    for axis in (0, 1):
        a = labels
        b = np.roll(labels, 1, axis=axis)
        diff = (a != b) & (a > 0) & (b > 0)
        if axis == 0:
            diff[0, :] = False
        else:
            diff[:, 0] = False
        seam |= diff
        if crack_seam is not None:
            pair_keys.append((axis, diff, np.minimum(a, b), np.maximum(a, b)))
    canvas[seam] = GREY["grain_boundary"]
    if crack_seam is not None:
        rng_c = feat.stream(seed, "contacts")
        n = int(labels.max()) + 1
        pairs = np.unique(np.concatenate([(lo_ * n + hi_)[d] for _, d, lo_, hi_ in pair_keys]))
        grey_of_pair = {}
        for key in pairs.tolist():
            if rng_c.random() < crack_contacts:
                grey_of_pair[key] = rng_c.uniform(0.04, 0.14)
                crack_pairs.add(divmod(key, n))
        keys = np.array(sorted(grey_of_pair), dtype=np.int64)
        greys = np.array([grey_of_pair[k] for k in keys.tolist()])
        for axis, diff, lo_, hi_ in pair_keys:
            if not keys.size:
                break
            at = np.flatnonzero(diff)
            key = (lo_.ravel()[at] * n + hi_.ravel()[at]).astype(np.int64)
            i = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            crack = keys[i] == key
            at, g = at[crack], greys[i[crack]]
            canvas.ravel()[at] = g
            if px <= 1.0:  # the crack's other side: two pixels wide
                step = W if axis == 0 else 1
                canvas.ravel()[at - step] = g

    # --- vesicles in the groundmass
    if n_vesicles is None:
        n_vesicles = max(2, int(round(area_um2 / 1.2e5)))
    n_against = int(round(vesicle_contact * n_vesicles))
    rng_v = feat.stream(seed, "vesicles")
    ves_mask = np.zeros((H, W), dtype=bool)
    crystal_zone = ndi.binary_dilation(labels > 0, iterations=max(1, int(round(5.0 / px))))
    placed, tries = 0, 0
    while placed < n_vesicles - n_against and tries < 50 * n_vesicles:
        tries += 1
        rad = rng.uniform(10.0, 45.0) / px
        c = rng.uniform([0, 0], [H, W])
        dr, dc = disk(tuple(c), rad, shape=(H, W))
        if dr.size == 0 or crystal_zone[dr, dc].any() or ves_mask[dr, dc].any():
            continue
        phi0 = rng.uniform(-np.pi, np.pi)
        placed += 1
        if vesicle_style == "real":
            inside, _, sl = feat.render_vesicle(canvas, c, rad, glass, px, rng_v)
            ves_mask[sl] |= inside
            continue
        canvas[dr, dc] = GREY["epoxy"]
        ves_mask[dr, dc] = True
        # polished wall: a bright crescent on one side of the rim
        rr_, cc_ = dr - c[0], dc - c[1]
        rho = np.hypot(rr_, cc_)
        phi = np.arctan2(rr_, cc_)
        ring = (rho > rad - max(1.5, 2.0 / px)) & (np.cos(phi - phi0) > 0.5)
        canvas[dr[ring], dc[ring]] = GREY["vesicle_wall"]
    against_vesicle: set[int] = set()
    if n_against > 0 and labels.any():
        outside = ndi.distance_transform_edt(labels == 0)
        for _ in range(50 * n_against):
            if len(against_vesicle) >= n_against:
                break
            rad = rng_v.uniform(10.0, 35.0) / px
            cand = np.flatnonzero(np.abs(outside.ravel() - (rad - 0.75)) < 0.75)
            if cand.size == 0:
                continue
            c = np.array(np.unravel_index(cand[int(rng_v.integers(cand.size))], (H, W)), float)
            dr, dc = disk(tuple(c), rad + 2, shape=(H, W))
            if ves_mask[dr, dc].any() or dr.size < 0.6 * np.pi * (rad + 2) ** 2:
                continue
            hit = labels[dr, dc]
            hit = hit[hit > 0]
            if hit.size == 0 or np.unique(hit).size > 1:  # against one crystal only
                continue
            inside, _, sl = (
                feat.render_vesicle(canvas, c, rad, glass, px, rng_v)
                if vesicle_style == "real"
                else _disc_vesicle(canvas, c, rad, px, rng_v)
            )
            ves_mask[sl] |= inside
            labels[sl][inside] = 0
            against_vesicle.add(int(hit[0]))

    # --- black epoxy regions and plucked holes
    epoxy = feat.epoxy_regions((H, W), px, epoxy_fraction, feat.stream(seed, "epoxy"))
    cut_by_epoxy = set(np.unique(labels[epoxy]).tolist()) - {0}
    if epoxy.any():
        rng_e = feat.stream(seed, "epoxy")
        canvas[epoxy] = rng_e.uniform(*feat.EPOXY_GREY) + 0.004 * rng_e.random(int(epoxy.sum()))
        labels[epoxy] = 0
        ves_mask &= ~epoxy
        if needle_mask is not None:
            needle_mask &= ~epoxy
    n_holes = int(round(plucked_holes * area_um2 / 1e6))
    if n_holes > 0:
        rng_h = feat.stream(seed, "holes")
        margin = max(2, int(round(3.0 / px)))
        free = (labels == 0) & ~ves_mask & ~epoxy
        for _ in range(20 * n_holes):
            if n_holes == 0:
                break
            rad = rng_h.uniform(2.0, 12.0) / px
            c = rng_h.uniform([0, 0], [H, W])
            hr, hc = polygon(*feat.hole_polygon(c, rad, rng_h).T, shape=(H, W))
            br, bc = disk(tuple(c), 1.4 * rad + margin, shape=(H, W))
            if hr.size < 3 or br.size < 0.9 * np.pi * (1.4 * rad + margin) ** 2:
                continue
            under = labels[br, bc]
            if not ((under == under[0]).all() and (under[0] > 0 or free[br, bc].all())):
                continue
            canvas[hr, hc] = rng_h.uniform(*feat.EPOXY_GREY)
            epoxy[hr, hc] = True
            n_holes -= 1

    # --- faint rims: a thin dark line just outside, or a thin bright line on the outermost
    # pixel, for some of the crystals whose rim has the glass's grey
    rng_z2 = feat.stream(seed, "halo")
    # (every label ever placed: epoxy or a vesicle may have erased the last ones)
    cue_of = np.zeros(next_label, dtype=np.int8)  # 1 dark line, 2 bright line
    for cr in crystals:
        if cr["rim_at_glass"]:
            cr["rim_cue"] = str(rng_z2.choice(["step", "dark_line", "bright_line"]))
            cue_of[cr["label"]] = {"step": 0, "dark_line": 1, "bright_line": 2}[cr["rim_cue"]]
    if cue_of.any():
        first, _ = feat.halo_rings(labels)
        bright = first & (cue_of[labels] == 2)
        canvas[bright] += rng_z2.uniform(0.03, 0.06)
        dark_ids = np.where(cue_of[labels] == 1, labels, 0)
        line = (labels == 0) & (ndi.maximum_filter(dark_ids, size=3) > 0)
        canvas[line] -= rng_z2.uniform(0.03, 0.08)

    # --- bright edge halos at the crystals' free faces
    halo_mask, halo_w, halo_amp = None, None, None
    if edge_halo > 0:
        halo_mask, halo_w, halo_amp = feat.add_edge_halos(
            canvas, labels, edge_halo, feat.stream(seed, "halo"), next_label
        )

    # --- probe blur, drift, noise, quantisation
    sigma_px = probe_fwhm_um / 2.355 / px
    blurred = ndi.gaussian_filter(canvas, sigma_px) if sigma_px > 0.05 else canvas
    clean = blurred * full_scale
    yy = np.linspace(-1, 1, H)[:, None]
    xx = np.linspace(-1, 1, W)[None, :]
    gy, gx, q = rng.uniform(-1, 1, size=3)
    field_ = gy * yy + gx * xx + 0.5 * q * (xx**2 + yy**2 - 2 / 3)
    field_ = 1 + drift * field_ / max(np.abs(field_).max(), 1e-9)
    signal = blurred * field_
    if scan_lines > 0:
        feat.add_scan_lines(signal, scan_lines, feat.stream(seed, "scan"))
    noisy = signal + rng.normal(0.0, noise, size=(H, W))
    bar_rows = 0
    if data_bar:
        bar = feat.data_bar((H, W), feat.stream(seed, "bar"))
        bar_rows = bar.shape[0]
        noisy[H - bar_rows :] = bar
        labels[H - bar_rows :] = 0
        ves_mask[H - bar_rows :] = False
        epoxy[H - bar_rows :] = False
        if needle_mask is not None:
            needle_mask[H - bar_rows :] = False
        if halo_mask is not None:
            halo_mask[H - bar_rows :] = False
    dn = noisy * full_scale
    if jpeg_quality is not None:
        dn = feat.jpeg_like(np.clip(dn, 0, full_scale), jpeg_quality, full_scale)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    image = np.clip(np.round(dn), 0, full_scale).astype(dtype)

    # --- truth, relabelled 1..N over crystals that remain visible
    new_labels, truth, zonings = _truth_table(
        labels, crystals, next_label, px, full_scale, bar_rows, crack_pairs,
        (halo_w, halo_amp), against_vesicle, cut_by_epoxy,
    )
    if needle_mask is not None:  # what crystals and vesicles cover is not a needle
        needle_mask &= (new_labels == 0) & ~ves_mask
    return SyntheticSample(
        image=image,
        labels=new_labels.astype(np.int32),
        truth=truth,
        pixel_size_um=px,
        clean=clean,
        noise_dn=noise * full_scale,
        zonings=zonings,
        full_scale=full_scale,
        vesicles=ves_mask,
        glass_grey=glass,
        epoxy=epoxy,
        halo=halo_mask,
        needles=needle_mask,
        data_bar_rows=bar_rows,
    )


