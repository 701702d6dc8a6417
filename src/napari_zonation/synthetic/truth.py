"""The synthetic section's ground truth: the :class:`SyntheticSample`, the truth table of
the visible crystals, and scribbles drawn from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .geometry import _inner_distance
from .zoning import GREY, _truth_row

# ----------------------------------------------------------------------------------------
# thin sections


@dataclass
class SyntheticSample:
    """A synthetic BSE thin section with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        uint8 or uint16 BSE image (y, x).
    labels : numpy.ndarray
        int32 true phenocryst labels (cracks and inclusions belong to their crystal).
    truth : pandas.DataFrame
        One row per crystal (see ``docs/synthetic.md``).
    pixel_size_um : float
        Micrometres per pixel.
    clean : numpy.ndarray
        float64 noise-free image in DN: probe blur applied, no drift, no noise.
    noise_dn : float
        1-sigma detector noise in DN.
    zonings : dict
        label -> :class:`Zoning` (grey as a fraction of full scale).
    full_scale : float
        255 or 65535.
    vesicles : numpy.ndarray
        bool mask of the vesicles (their discs; halos and walls outside the disc excluded).
    glass_grey : float
        Grey of the glass (fraction of full scale).
    epoxy : numpy.ndarray or None
        bool mask of black epoxy: mounting regions and plucked holes (a hole inside a crystal
        keeps the crystal's label).
    halo : numpy.ndarray or None
        bool mask of the crystals' edge-halo pixels (inside their labels), when drawn.
    needles : numpy.ndarray or None
        bool mask of needle microlites and microlite clusters, when drawn.
    data_bar_rows : int
        Rows of the data bar at the bottom (0: none).
    """

    image: np.ndarray
    labels: np.ndarray
    truth: pd.DataFrame
    pixel_size_um: float
    clean: np.ndarray
    noise_dn: float
    zonings: dict = field(default_factory=dict)
    full_scale: float = 255.0
    vesicles: np.ndarray | None = None
    glass_grey: float = GREY["glass"]
    epoxy: np.ndarray | None = None
    halo: np.ndarray | None = None
    needles: np.ndarray | None = None
    data_bar_rows: int = 0

    def true_profile(self, label: int, distance_um) -> np.ndarray:
        """Noise-free, unblurred grey (DN) of crystal ``label`` at distances from its rim."""
        return self.zonings[int(label)].grey(distance_um) * self.full_scale


def _truth_table(
    labels: np.ndarray,
    crystals: list[dict],
    next_label: int,
    px: float,
    full_scale: float,
    bar_rows: int,
    crack_pairs,
    halos: tuple,
    against_vesicle,
    cut_by_epoxy,
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The crystals that remain visible, relabelled 1..N in drawing order, and their truth rows.

    Returns ``(labels, truth, zonings)``: the relabelled image, one truth row per visible
    crystal (phase, zoning, area, contacts, cracks, halo, ...) and its :class:`Zoning` by label.
    """
    H = labels.shape[0]
    halo_w, halo_amp = halos
    rows, zonings = [], {}
    new_labels = np.zeros_like(labels)
    min_visible = max(50, int(400.0 / (px * px)))
    new_id = 0
    lab_ids = np.arange(max(int(labels.max()) + 1, next_label))  # (erased labels too)
    counts = np.bincount(labels.ravel(), minlength=lab_ids.size)
    mapping = np.zeros(lab_ids.size, dtype=np.int32)
    for cr in crystals:
        if counts[cr["label"]] < min_visible:
            continue
        new_id += 1
        mapping[cr["label"]] = new_id
    new_labels = mapping[labels]
    border = np.zeros(new_id + 1, dtype=bool)
    edges = [new_labels[0], new_labels[-1], new_labels[:, 0], new_labels[:, -1]]
    if 0 < bar_rows < H:
        edges.append(new_labels[H - bar_rows - 1])
    for edge in edges:
        border[np.unique(edge)] = True
    touching_ids = set()
    for axis in (0, 1):
        a = np.moveaxis(new_labels, axis, 0)
        u, v = a[1:], a[:-1]
        m = (u != v) & (u > 0) & (v > 0)
        touching_ids.update(u[m].tolist())
        touching_ids.update(v[m].tolist())
    crack_ids = {int(mapping[i]) for pair in crack_pairs for i in pair}
    for cr in crystals:
        nid = int(mapping[cr["label"]])
        if nid == 0:
            continue
        z = cr["zoning"]
        zonings[nid] = z
        row = _truth_row(nid, cr["phase"], z, full_scale, "grey")
        mask = new_labels == nid
        rr, cc = np.nonzero(mask)
        row.update(
            area_um2=float(mask.sum() * px * px),
            touches_border=bool(border[nid]),
            touching=nid in touching_ids,
            cracked=bool(cr["cracked"]),
            n_inclusions=int(cr["n_incl"]),
            centroid_row=float(rr.mean()),
            centroid_col=float(cc.mean()),
            depth_um=float(cr["depth"]),
            rim_at_glass=bool(cr["rim_at_glass"]),
            rim_cue=cr["rim_cue"],
            thin_rim=bool(cr["thin_rim"]),
            halo_px=int(halo_w[cr["label"]]) if halo_w is not None else 0,
            halo_dn=float(halo_amp[cr["label"]] * full_scale) if halo_amp is not None else 0.0,
            crack_contact=nid in crack_ids and nid in touching_ids,
            vesicle_contact=cr["label"] in against_vesicle,
            cut_by_epoxy=cr["label"] in cut_by_epoxy,
        )
        rows.append(row)
    truth = pd.DataFrame(rows)
    return new_labels, truth, zonings


def strokes_from_truth(sample: SyntheticSample, per_phase: bool = True) -> np.ndarray:
    """A few scribble strokes drawn from a synthetic section's truth, as a person paints them.

    One short horizontal line through the innermost point of the biggest crystal of each
    phase (class 3, 4, 5 for the phases in alphabetical order, or 3 for every crystal with
    ``per_phase=False``), four 21-pixel lines in the groundmass at least 8 pixels from any
    crystal and vesicle (class 1), and one line across each of the first two vesicles
    (class 2): a few hundred painted pixels, for :func:`napari_zonation.scribble.
    train_scribbles`, its tests and benchmark.

    Parameters
    ----------
    sample : SyntheticSample
        From :func:`make_thin_section`.
    per_phase : bool
        One stroke class per phase (default) or one class for all crystals.

    Returns
    -------
    numpy.ndarray
        int32 strokes of the image's shape, 0 where nothing is painted.
    """
    lab, truth = sample.labels, sample.truth
    scr = np.zeros(lab.shape, np.int32)
    phases = sorted(truth["phase"].unique())
    objects = ndi.find_objects(lab)
    picks = truth.sort_values("area_um2", ascending=False).drop_duplicates("phase")
    for _, row in picks.iterrows():
        label = int(row["label"])
        inner, r0, c0 = _inner_distance(lab == label, objects[label - 1], lab.shape)
        r, c = np.unravel_index(np.argmax(inner), inner.shape)
        half = int(0.5 * inner[r, c])
        cc = np.arange(c - half, c + half + 1)
        cc = cc[(cc >= 0) & (cc < inner.shape[1])]
        scr[r0 + r, c0 + cc[inner[r, cc] > 3]] = 3 + phases.index(row["phase"]) if per_phase else 3
    vesicle = (lab == 0) & (sample.clean < 0.15 * 255)
    gm = (ndi.distance_transform_edt(lab == 0) > 8) & ~ndi.binary_dilation(vesicle, iterations=8)
    rr, cc = np.nonzero(gm)
    for i in np.random.default_rng(0).choice(rr.size, 4, replace=False):
        seg = np.arange(cc[i] - 10, cc[i] + 11)
        seg = seg[(seg >= 0) & (seg < lab.shape[1])]
        scr[rr[i], seg[gm[rr[i], seg]]] = 1
    vl, _ = ndi.label(vesicle)
    for v, sl in enumerate(ndi.find_objects(vl)[:2], start=1):
        d, r0, c0 = _inner_distance(vl == v, sl, lab.shape)
        r, c = np.unravel_index(np.argmax(d), d.shape)
        h = int(max(1, d[r, c] - 2))
        scr[r0 + r, max(0, c0 + c - h) : c0 + c + h + 1] = 2
    return scr
