"""What-if checks of error terms on a saved generator table (issue #25), without refitting.

    python benchmarks/diffusion.py --part generator --save dev.csv
    python benchmarks/diffusion_interval_whatif.py dev.csv [more.csv ...]

From each fitted crystal's sqrt(Dt) and 1-sigma error (symmetric, the mean of the two sides),
the coverage of the 5-95 % interval of ln(Dt) is recomputed:

- ``t quantile``: the interval from a Student-t quantile with the fit's n - 4 degrees of
  freedom where the errors were scaled by the residual scatter (chi2_red > 1), or everywhere;
- ``blur term u``: a variance term for the blur's uncertainty added to var(ln Dt): for an erf
  step blurred by a Gaussian, Dt = (w^2 - sigma_blur^2) / 2, so an uncertainty ``u`` (um^2)
  of sigma_blur^2 adds ``(u / (2 Dt))^2``.

Printed: coverage overall and per size bin (points in the profile), pulls sd, and per
sqrt(Dt) bin.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy import stats

SIZE_BINS = [0, 29, 41, 10**6]
S_BINS = [0, 1.5, 2.5, 3.5, 5.0]


def main(paths: list[str]) -> None:
    res = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    ok = res[res.status == "ok"].copy()
    e = 2.0 * ok.s_err / ok.s_fit  # 1-sigma of ln(Dt)
    dl = 2.0 * np.log(ok.s_true / ok.s_fit)
    nb = pd.cut(ok.n_points, SIZE_BINS)
    sb = pd.cut(ok.s_true, S_BINS)
    dof = np.maximum(ok.n_points - 4, 1)
    print(f"{len(ok)} crystals fitted ok; coverage by size bins {SIZE_BINS[1:-1]} points")
    for name, q in (("normal 1.645", np.full(len(ok), 1.645)),
                    ("t quantile where chi2_red > 1",
                     np.where(ok.chi2_red > 1, stats.t.ppf(0.95, dof), 1.645)),
                    ("t quantile everywhere", stats.t.ppf(0.95, dof))):
        c = np.abs(dl / e) < q
        print(f"{name:30s} coverage {c.mean():.3f}  by size "
              f"{c.groupby(nb, observed=True).mean().round(2).tolist()}")
    for u in (1 / 12, 1 / 6, 0.5, 1.0):
        e2 = np.sqrt(e**2 + (u / (2.0 * ok.s_fit**2)) ** 2)
        pull = dl / e2
        c = np.abs(pull) < 1.645
        by_s = c.groupby(sb, observed=True).mean().round(2).tolist()
        sd_s = pull.groupby(sb, observed=True).std().round(2).tolist()
        print(f"blur term u {u:.3f} um^2{'':9s} coverage {c.mean():.3f}  pulls sd "
              f"{pull.std():.2f}  by sqrt(Dt) {by_s} (pulls sd {sd_s})")


if __name__ == "__main__":
    main(sys.argv[1:])
