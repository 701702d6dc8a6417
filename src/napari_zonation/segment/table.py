"""``crystal_table``: size, position, grey, a phase guess and QA flags of each crystal."""

from __future__ import annotations

import edt
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import measure, morphology

from .._validation import ZonationInputError, check_labels, check_pixel_size
from ..vocabulary import GREY_CLASS_PHASES
from .fields import local_texture
from .labelops import adjacent_pairs, label_medians
from .levels import histogram_mode, noise_sigma
from .morphology import flat_nonzero
from .qa import rim_qa
from .source import full_scale, subsample, to_grey

#: Default names of the grey-level classes used by :func:`crystal_table` (a heuristic).
DEFAULT_PHASE_NAMES = dict(GREY_CLASS_PHASES)


#: Columns of :func:`crystal_table`, in its order.
TABLE_COLUMNS = [
    "label",
    "area_um2",
    "phase",
    "touches_border",
    "mean_value",
    "median_value",
    "centroid_row",
    "centroid_col",
    "equivalent_diameter_um",
    "solidity",
    "low_contrast",
    "cracked",
    "touching",
    "n_pixels",
    "rim_grey",
    "edge_contrast",
    "edge_sure",
    "faint_edge",
    "rim_near_groundmass",
]


def _groundmass_level(grey: np.ndarray, labels: np.ndarray, px: float):
    """Reference grey of the pixels that are not crystals: (level, width, masked) in grey units.

    The groundmass is the mode of the most textured half of the non-crystal pixels; a
    near-black dominant mode (a background masked black) gives ``masked=True``.
    """
    finite = np.isfinite(grey)
    sample = subsample(grey[finite])
    lo, hi = np.percentile(sample, [0.1, 99.9])
    span = float(hi - lo) or 1.0
    norm = ((np.where(finite, grey, float(np.median(sample))) - lo) / span).astype(np.float32)
    out = (labels == 0) & finite
    if not out.any():
        return np.nan, np.nan, False
    det = ndi.gaussian_filter(norm, max(1.0, 3.0 / px))
    s_out = subsample(det[out])
    mode_all, width_all, _, _ = histogram_mode(s_out, -0.05, 1.05)
    if mode_all < 0.15 and np.mean(s_out < mode_all + 0.1) > 0.5:
        return float(mode_all * span + lo), float(width_all * span), True
    tex = subsample(local_texture(norm, max(0.5, 1.0 / px), max(1.5, 2.0 / px))[out])
    rough = tex >= np.percentile(tex, 50)
    not_black = s_out > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_out.shape, bool)
    level, _, _, _ = histogram_mode(s_out[rough & not_black], -0.05, 1.05)
    level, width, _, _ = histogram_mode(s_out[not_black], -0.05, 1.05, near=(level, 0.04))
    return float(level * span + lo), float(width * span), False


#: a crack's darkest point lies at least this fraction of the crystal's grey (above black)
#: below its surroundings: open cracks show epoxy or void, near black; zoning bands and
#: resorption surfaces, thin and dark too, differ from their host by a few grey levels
CRACK_MIN_DEPTH = 0.25


def _cracked(grey, labels, px, noise, ids, host=None, black=0.0):
    """Crystals crossed by thin dark features: a black top-hat inside the crystal, elongated,
    and deep (``CRACK_MIN_DEPTH`` of the crystal's grey ``host`` above ``black``, when
    given)."""
    sig = max(0.5, 0.5 / px)
    s = ndi.gaussian_filter(np.where(np.isfinite(grey), grey, 0.0), sig)
    size = max(3, 2 * int(round(1.5 / px)) + 1)
    bth = ndi.grey_closing(s, size=(size, size)) - s
    noise_l = noise / max(1.0, 2.0 * np.sqrt(np.pi) * sig)
    # away from the crystal's own edge (the closing reaches over it), also where it touches
    # another crystal (their grain boundary is a thin dark line too, not a crack)
    inner = edt.edt(labels, black_border=False, parallel=1) > size
    line = (bth > max(5.0 * noise_l, 1e-12)) & inner
    out = np.zeros(len(ids), dtype=bool)
    if not line.any():
        return out
    comp, n_comp = ndi.label(line, structure=np.ones((3, 3), bool))
    if n_comp == 0:
        return out
    min_len = max(10.0 / px, 5.0)
    # long and thin: a skeleton at least ``min_len`` long, and a mean width (area over
    # skeleton length) within the top-hat's reach; crossing cracks stay line-like, unlike
    # by the components' second moments
    rr, cc = flat_nonzero(comp)
    lbl = comp[rr, cc]
    cnt = np.bincount(lbl, minlength=n_comp + 1).astype(float)
    skel = morphology.skeletonize(line)
    length = np.bincount(comp[skel], minlength=n_comp + 1).astype(float)
    line_like = (length >= min_len) & (cnt <= size * np.maximum(length, 1.0))
    line_like[0] = False
    owner = np.zeros(n_comp + 1, dtype=np.int64)
    owner[lbl] = labels[rr, cc]
    if host is not None:
        depth = np.zeros(n_comp + 1)
        np.maximum.at(depth, lbl, bth[rr, cc])
        level = np.zeros(int(labels.max()) + 1)
        level[np.asarray(ids, dtype=np.int64)] = np.asarray(host, float) - black
        line_like &= depth >= CRACK_MIN_DEPTH * np.maximum(level[owner], 1e-12)
    cracked_ids = np.unique(owner[line_like])
    out[:] = np.isin(np.asarray(ids), cracked_ids)
    return out


def phase_by_grey(frac: np.ndarray, ref_frac: float, names: dict) -> np.ndarray:
    """Each crystal's phase from its median grey.

    Parameters
    ----------
    frac : ndarray
        Every crystal's median grey as a fraction between the black level (0) and full
        scale (1).
    ref_frac : float
        The groundmass's grey on the same scale; NaN when there is none to compare with
        (a masked image): the phases are then ``"unknown"`` except the very bright ones.
    names : dict
        Phase names for the classes ``darker``, ``brighter_low``, ``brighter_high`` and
        ``very_bright``.

    Returns
    -------
    ndarray of object
        One phase name per crystal. Crystals brighter than the groundmass are split in two
        at an Otsu threshold when the two groups are well apart (their means more than three
        pooled standard deviations), else 0.18 of full scale above the groundmass.
    """
    very = frac > 0.85
    known = np.isfinite(ref_frac)
    darker = frac < ref_frac if known else np.zeros(frac.shape, bool)
    bright = ~darker & ~very
    phase = np.where(darker, names["darker"], names["brighter_low"]).astype(object)
    if not known:
        phase[:] = "unknown"
    phase[very] = names["very_bright"]
    vals = frac[bright] if known else frac[:0]
    if vals.size:
        split = ref_frac + 0.18
        if vals.size >= 4 and np.ptp(vals) > 0:
            from skimage.filters import threshold_otsu

            t = float(threshold_otsu(vals))
            low, high = vals[vals <= t], vals[vals > t]
            pooled = np.sqrt((np.var(low) * low.size + np.var(high) * high.size) / vals.size)
            if low.size and high.size and high.mean() - low.mean() > 3.0 * max(pooled, 1e-9):
                split = t
        phase[bright] = np.where(vals > split, names["brighter_high"], names["brighter_low"])
    return phase


def grey_per_label(
    grey: np.ndarray, lab: np.ndarray, lab_fin: np.ndarray, finite: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and median grey of the crystals ``ids`` of ``lab`` (NaN pixels ignored).

    ``lab_fin`` is ``lab`` with 0 where ``grey`` is not finite (``finite`` False); a crystal
    with no finite pixel gets a NaN mean.
    """
    n = int(lab.max())
    counts = np.bincount(lab_fin.ravel(), minlength=n + 1)
    sums = np.bincount(
        lab_fin.ravel(), weights=np.where(finite, grey, 0.0).ravel(), minlength=n + 1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts[ids] > 0, sums[ids] / counts[ids], np.nan)
    median = label_medians(np.where(finite, grey, 0.0), lab_fin, n)[ids - 1]
    return mean, median


def crystal_table(
    image,
    labels,
    pixel_size_um: float = 1.0,
    *,
    phase_names: dict | None = None,
    groundmass_level: float | None = None,
) -> pd.DataFrame:
    """Measure each crystal: size, position, grey, a phase guess and QA flags.

    Parameters
    ----------
    image : array-like
        The image that was segmented (2D grey, RGB(A) or ``(channels, y, x)`` element maps, as
        for :func:`segment_crystals`; element maps are combined the same way).
    labels : array-like of int
        Crystal labels of the image's (y, x) shape, 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    phase_names : dict, optional
        Names for the grey-level classes, keyed by class (``"darker"``, ``"brighter_low"``,
        ``"brighter_high"``, ``"very_bright"``) or by the default name they replace
        (``{"olivine": "Ol"}``).
    groundmass_level : float, optional
        The groundmass's grey in image units, e.g. ``info["reference"]`` of
        ``segment_crystals(..., return_info=True)`` when ``info["background"]`` is
        ``"groundmass"``, or the glass grey a user knows for an image whose background was
        masked black. Default: measured on the pixels that are not crystals (none when the
        background is masked black).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``area_um2``, ``phase``, ``touches_border``,
        ``mean_value``, ``median_value`` (image units), ``centroid_row``, ``centroid_col``
        (pixels), ``equivalent_diameter_um``, ``solidity``, ``low_contrast`` (the crystal's grey
        is within three widths of the groundmass mode), ``cracked`` (thin, elongated dark
        features inside), ``touching`` (shares a boundary with another label), ``n_pixels``,
        and the rim QA columns (:mod:`napari_zonation.segment.qa`): ``rim_grey`` (image
        units), ``edge_contrast`` (the step across the outline in units of the pixel noise,
        median over the outline), ``edge_sure`` (the share of the outline where that step
        stands out of the noise), ``faint_edge`` (flag: less than half of it does) and
        ``rim_near_groundmass`` (flag: the rim's grey is within three widths of the
        groundmass's).

    Notes
    -----
    The phase is a heuristic from BSE grey levels, not a mineral identification. Relative to
    the groundmass mode (glass and microlites): darker -> ``"plagioclase"``; brighter crystals
    are split in two grey modes (Otsu threshold of their medians when the two groups are well
    apart, else a threshold 0.18 of full scale above the groundmass): the lower
    ``"clinopyroxene"``, the higher ``"olivine"``; a median above 0.85 of full scale
    ``"oxide"``. Without a groundmass (a background masked black) and without
    ``groundmass_level`` there is nothing to compare with: the phase is ``"unknown"`` (except
    ``"oxide"``). Element maps have no such physics: check the phases by hand.
    """
    px = check_pixel_size(pixel_size_um)
    grey, dtype = to_grey(image)
    lab = check_labels(labels, grey.shape)
    names = {**DEFAULT_PHASE_NAMES}
    if phase_names:
        if not isinstance(phase_names, dict):
            raise ZonationInputError(
                "phase_names must be a dict, e.g. {'olivine': 'Ol'} or {'darker': 'plag'}."
            )
        for key, val in phase_names.items():
            if key in names:
                names[key] = str(val)
            else:
                hit = [k for k, v in DEFAULT_PHASE_NAMES.items() if v == key]
                if not hit:
                    raise ZonationInputError(
                        f"phase_names key {key!r} is neither a class ({sorted(names)}) nor a "
                        f"default name ({sorted(DEFAULT_PHASE_NAMES.values())})."
                    )
                names[hit[0]] = str(val)
    columns = list(TABLE_COLUMNS)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    finite = np.isfinite(grey)
    props = measure.regionprops_table(
        lab,
        properties=("label", "area", "centroid", "equivalent_diameter_area", "solidity"),
    )
    table = pd.DataFrame(
        {
            "label": props["label"].astype(np.int64),
            "n_pixels": props["area"].astype(np.int64),
            "centroid_row": props["centroid-0"],
            "centroid_col": props["centroid-1"],
            "equivalent_diameter_um": props["equivalent_diameter_area"] * px,
            "solidity": props["solidity"],
        }
    )
    table["area_um2"] = table["n_pixels"] * px * px
    # mean and median grey per crystal (NaN pixels ignored)
    lab_fin = np.where(finite, lab, 0)
    ids_t = table["label"].to_numpy()
    table["mean_value"], table["median_value"] = grey_per_label(grey, lab, lab_fin, finite, ids_t)
    # border and contact
    edge_ids = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    table["touches_border"] = table["label"].isin(edge_ids[edge_ids > 0])
    la, lb, _, _ = adjacent_pairs(lab)
    table["touching"] = table["label"].isin(np.unique(np.concatenate([la, lb])))
    # groundmass (or masked background) and the grey classes
    level, width, masked = _groundmass_level(grey, lab, px)
    if groundmass_level is not None:
        if not np.isfinite(groundmass_level):
            raise ZonationInputError(
                f"groundmass_level={groundmass_level!r} must be a finite grey (image units)."
            )
        gm_given = float(groundmass_level)
    else:
        gm_given = None
    sample = subsample(grey[finite])
    full = full_scale(sample, dtype)
    black = 0.0 if np.issubdtype(dtype, np.integer) or sample.min() >= 0 else float(sample.min())
    frac = (table["median_value"].to_numpy() - black) / (full - black)
    gm_frac = (level - black) / (full - black) if np.isfinite(level) else np.nan
    noise = noise_sigma(np.where(finite, grey, 0.0))
    wide = max(width if np.isfinite(width) else 0.0, 2.0 * noise / max(1.0, 2 * np.sqrt(np.pi)))
    # the crystal's grey against the black mask (masked) or the groundmass
    table["low_contrast"] = (table["median_value"] - level).abs() < 3.0 * wide
    if gm_given is not None:
        gm_frac = (gm_given - black) / (full - black)
    elif masked:
        gm_frac = np.nan  # no groundmass to compare with
    ref_frac = gm_frac
    phase = phase_by_grey(frac, ref_frac, names)
    table["phase"] = phase
    table["cracked"] = _cracked(grey, lab, px, noise, table["label"].to_numpy(),
                                table["median_value"].to_numpy(float), black)
    qa = rim_qa(
        np.where(finite, grey, 0.0),
        lab_fin,
        px,
        noise,
        table["label"].to_numpy(),
        gm_given if gm_given is not None else (np.nan if masked else level),
        np.nan if (masked or gm_given is not None) else width,
    )
    for col in qa.columns:
        table[col] = qa[col].to_numpy()
    return table[columns].reset_index(drop=True)
