"""Time of the slope models with and without rounded corners.

    python benchmarks/zoning_ramp_speed.py

Fits every slope variant to the same random profiles (the training families, 4 each, seed 7)
with ``fit_ramps(rounded=False)`` and ``fit_ramps(rounded=True)``, alternating, and prints the
median time per profile of each and their ratio.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from napari_zonation._zoning_base import ProfileData
from napari_zonation._zoning_ramps import fit_ramps
from napari_zonation.synthetic_profiles import make_random_profiles


def main() -> None:
    prof, _ = make_random_profiles(4, seed=7)
    times = {False: [], True: []}
    warnings.simplefilter("ignore", RuntimeWarning)
    for _, g in prof.groupby("label"):
        g = g.sort_values("distance_um")
        d, v = g["distance_um"].to_numpy(float), g["value"].to_numpy(float)
        p = ProfileData(d=d, v=v, w=np.ones(d.size), known_sigma=False)
        for rounded in (False, True):
            t0 = time.perf_counter()
            fit_ramps(p, rounded=rounded)
            times[rounded].append(time.perf_counter() - t0)
    sharp, rounded = np.median(times[False]), np.median(times[True])
    print(
        f"{len(times[False])} profiles: median per profile sharp {1e3 * sharp:.1f} ms, "
        f"rounded {1e3 * rounded:.1f} ms, ratio {rounded / sharp:.2f}"
    )


if __name__ == "__main__":
    main()
