"""One decision per crystal on the real plagioclase: the one-step fit every crystal used to get
against the fit of what Describe found (``fit_as_described``).

The packaged BSE image (Lubbers et al. 2022, MIT; 1.18 um/px estimated) is segmented,
profiled and described; then, with a plain D of 1e-3 um^2/s (the ratio of the two fits'
sqrt(Dt), not the days, is what compares), each crystal is fitted twice and printed with
Describe's verdict.

    python benchmarks/described_fit.py
"""

from __future__ import annotations

import pandas as pd

import napari_zonation as nz
from napari_zonation._napari_io import PLAGIOCLASE_TIFF
from napari_zonation.diffusion.described import fit_as_described

PX = 1.18
D_UM2_S = 1e-3


def main() -> None:
    img = nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]
    lab = nz.segment_crystals(img, PX)
    prof = nz.rim_profiles(img, lab, PX)
    zoning = nz.describe_zoning(prof)
    step = nz.fit_diffusion(prof, model="step", diffusivity_um2_s=D_UM2_S, n_samples=200)
    described = fit_as_described(prof, zoning, diffusivity_um2_s=D_UM2_S, n_samples=200)
    cols = ["label", "fit_status", "step_position_um", "sqrt_dt_um"]
    out = (zoning[["label", "zoning_type", "step_positions_um"]]
           .merge(step[cols], on="label")
           .merge(described[[*cols, "describe_status"]], on="label",
                  suffixes=(" (one step)", " (as described)")))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 140)
    for row in out.to_dict("records"):
        print("\n".join(f"{k:>32}: {v}" for k, v in row.items()), end="\n\n")


if __name__ == "__main__":
    main()
