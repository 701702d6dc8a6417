"""Render ``docs/images/synthetic_vs_real.png``: the real plagioclase beside synthetic scenes
made with the realism options of ``make_thin_section``, at the same grey scale.

Top row: the real BSE image (Lubbers et al. 2022, MIT), a scene with every option at once
(``SCENE_KINDS["real"]``) and a glassy scene with faint olivine rims (``"faint_rims"``).
Bottom row: the real grain's edge and a synthetic edge with halos, pixel for pixel; and the
grey against the distance to the outline (shell medians, nothing skipped) of the real grain
and of synthetic crystals with and without halos.

    python docs/synthetic_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

import napari_zonation as nz  # noqa: E402
from napari_zonation._napari_io import PLAGIOCLASE_PIXEL_SIZE_UM, PLAGIOCLASE_TIFF  # noqa: E402
from napari_zonation.synthetic import SCENE_KINDS  # noqa: E402

OUT = Path(__file__).resolve().parent / "images" / "synthetic_vs_real.png"


def edge_profile(image, labels, px, label):
    """Shell medians from the outline inward, nothing skipped."""
    prof = nz.rim_profiles(image, labels, px, skip_rim_um=0, halo_um=0, clip_sigmas=None)
    g = prof[prof["label"] == label]
    return g["distance_um"].to_numpy()[:12] / px, g["value"].to_numpy()[:12]


def main() -> None:
    real = nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]
    px_real = PLAGIOCLASE_PIXEL_SIZE_UM
    every = nz.make_thin_section(n_crystals=23, seed=0, noise=0.035, **SCENE_KINDS["real"])
    faint = nz.make_thin_section(n_crystals=23, seed=3, noise=0.035, **SCENE_KINDS["faint_rims"])
    halo = nz.make_thin_section(n_crystals=23, seed=1, noise=0.035, edge_halo=0.35,
                                epoxy_fraction=0.1)

    fig, ax = plt.subplots(2, 3, figsize=(15, 10.5))
    kw = {"cmap": "gray", "vmin": 0, "vmax": 255, "interpolation": "nearest"}
    ax[0, 0].imshow(real, **kw)
    ax[0, 0].set_title(f"real plagioclase, {px_real} um/px (Lubbers et al. 2022)")
    ax[0, 1].imshow(every.image, **kw)
    ax[0, 1].set_title('synthetic, SCENE_KINDS["real"], 1 um/px')
    ax[0, 2].imshow(faint.image, **kw)
    ax[0, 2].contour(faint.labels > 0, [0.5], colors="tab:red", linewidths=0.4)
    ax[0, 2].set_title('synthetic, "faint_rims" (red: true outlines)')
    ax[1, 0].imshow(real[1330:1420, 380:500], **kw)
    ax[1, 0].set_title("real: the grain's edge (bright halo)")
    # a synthetic crystal's free edge against epoxy or glass, 90 x 120 px
    t = halo.truth
    row = t[(~t.touches_border) & (~t.touching)].sort_values("area_um2").iloc[-1]
    c = int(row.centroid_col)
    rows = np.nonzero(halo.labels[:, c] == row.label)[0]
    r1 = int(rows.max())
    r0 = max(r1 - 60, 0)
    c0 = max(c - 60, 0)
    ax[1, 1].imshow(halo.image[r0 : r0 + 90, c0 : c0 + 120], **kw)
    ax[1, 1].set_title("synthetic: an edge with edge_halo=0.35")
    author = ndi.binary_fill_holes(real > 1)
    parts, _ = ndi.label(author)
    area = np.bincount(parts.ravel())
    area[0] = 0
    big = np.where(parts == np.argmax(area), 1, 0)
    d, v = edge_profile(real, big, px_real, 1)
    ax[1, 2].plot(d, v, "k.-", label="real plagioclase (author's mask)")
    plain = nz.make_thin_section(n_crystals=23, seed=1, noise=0.035, epoxy_fraction=0.1)
    for sample, style, name in ((halo, "r.-", "synthetic, halo"),
                                (plain, "b.-", "same crystal, no halo")):
        d, v = edge_profile(sample.image, sample.labels, 1.0, int(row.label))
        ax[1, 2].plot(d, v, style, label=name)
    ax[1, 2].set_xlabel("distance from the outline (px)")
    ax[1, 2].set_ylabel("shell median grey")
    ax[1, 2].legend()
    ax[1, 2].set_title("grey against the distance to the outline")
    for a in ax.ravel()[:5]:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
