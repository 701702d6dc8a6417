"""The step model on 1D erf steps of known sqrt(Dt) (issue #25): the fit's bias and pulls
without images, pixels, shells or segmentation.

    python benchmarks/diffusion_oned.py

1. Noise-free: erf steps (sqrt(Dt) 3-4.5 um, blurred by the generator's probe, one point per
   micrometre from 1.5 um) fitted with the defaults, the core held, the rim open and the erf
   quick look: the relative error of sqrt(Dt).
2. Noisy (sigma 0.8 on a step of 12): 20 draws per sqrt(Dt) and profile length, the mean
   relative error, the mean and sd of the pulls.
3. ``--held N``: the estimator's own bias apart from the model's assumptions. N draws of
   30-point profiles with sqrt(Dt) 3 and 4.5 um, the data made either as the erf (an infinite
   medium: the rim plateau extends beyond the first point) or as the default model assumes
   (the rim held at the rim plateau at the first point: the erf minus its image about the
   first point); the mean relative error and its standard error, the pulls, and the
   coverage of the 5-95 % interval.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
from scipy.special import erf

from napari_zonation.diffusion import fit_diffusion

BLUR = 1.2 / 2.3548  # the generator's probe, Gaussian sigma (um)


def _step(d, s, p):
    w = np.sqrt(2 * s * s + BLUR * BLUR)
    return 100 + 12 * 0.5 * (1 + erf((d - p) / (np.sqrt(2) * w)))


def _fit(prof, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_diffusion(prof, diffusivity_um2_s=1e-3, n_samples=0, **kw)


def noise_free() -> None:
    print("== noise-free: relative error of sqrt(Dt) ==")
    for s, length, p in ((3.0, 30, 10.3), (3.0, 30, 16.0), (3.0, 60, 10.3), (4.5, 30, 13.5),
                         (4.5, 30, 20.0)):
        d = np.arange(1.5, length, 1.0)
        prof = pd.DataFrame(dict(label="a", distance_um=d, value=_step(d, s, p), sigma=0.8,
                                 source="rim"))
        out = []
        for name, kw in (("default", {}), ("core fixed", {"core": "fixed"}),
                         ("rim open", {"rim": "open"}), ("erf", {"model": "erf"})):
            f = _fit(prof, **kw).iloc[0]
            err = f.sqrt_dt_um / s - 1 if f.fit_status == "ok" else float("nan")
            out.append(f"{name} {err:+.4f} ({f.fit_status})")
        print(f"sqrt(Dt) {s} um, {length} points, step at {p} um: " + ", ".join(out))


def noisy(**kw) -> None:
    print(f"== noisy, 20 draws each {kw or ''}: mean relative error, pulls mean and sd ==")
    rng = np.random.default_rng(0)
    for s in (1.0, 2.0, 3.0, 4.5):
        for length in (20, 30, 60):
            p = max(8, 3 * s) + 0.3 * (0.45 * length - max(8, 3 * s))
            d = np.arange(1.5, length, 1.0)
            prof = pd.concat([pd.DataFrame(dict(label=k, distance_um=d, sigma=0.8, source="rim",
                                                value=_step(d, s, p) + rng.normal(0, 0.8, d.size)))
                              for k in range(20)])
            f = _fit(prof, **kw)
            ok = f[f.fit_status == "ok"]
            pull = (ok.sqrt_dt_um - s) / ok.sqrt_dt_err_um
            print(f"sqrt(Dt) {s} um, {length} points: ok {len(ok)}, mean rel. error "
                  f"{(ok.sqrt_dt_um / s - 1).mean():+.3f}, pulls mean {pull.mean():+.2f} "
                  f"sd {pull.std():.2f}")


def _held_step(d, s, p, x0):
    """The step relaxed with the rim held at the rim plateau at ``x0`` (image about x0)."""
    w = np.sqrt(2 * s * s + BLUR * BLUR)
    u = 0.5 * (1 + erf((d - p) / (np.sqrt(2) * w))) - 0.5 * (1 + erf((2 * x0 - d - p)
                                                                     / (np.sqrt(2) * w)))
    return 100 + 12 * u


def held(n: int) -> None:
    print(f"== {n} draws, 30 points: mean rel. error (+- s.e.), pulls, 5-95 % coverage ==")
    for s in (3.0, 4.5):
        p = max(8, 3 * s) + 0.3 * (0.45 * 30 - max(8, 3 * s))
        d = np.arange(1.5, 30, 1.0)
        for name, curve in (("erf data (infinite medium)", _step(d, s, p)),
                            ("rim-held data (the model)", _held_step(d, s, p, d[0]))):
            rng = np.random.default_rng(7)
            prof = pd.concat([pd.DataFrame(dict(label=k, distance_um=d, sigma=0.8,
                                                source="rim",
                                                value=curve + rng.normal(0, 0.8, d.size)))
                              for k in range(n)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = fit_diffusion(prof, diffusivity_um2_s=1e-3, n_samples=2000)
            ok = f[f.fit_status == "ok"]
            rel = ok.sqrt_dt_um / s - 1
            pull = (ok.sqrt_dt_um - s) / ok.sqrt_dt_err_um
            t = s * s / 1e-3 / 86400
            cov = ((ok.timescale_days_lo <= t) & (ok.timescale_days_hi >= t)).mean()
            print(f"sqrt(Dt) {s} um, {name}: ok {len(ok)}, rel. error {rel.mean():+.3f} "
                  f"+- {rel.std() / np.sqrt(len(ok)):.3f}, pulls mean {pull.mean():+.2f} "
                  f"sd {pull.std():.2f}, covers {cov:.2f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--held" in args:
        held(int(args[args.index("--held") + 1]))
        sys.exit()
    noise_free()
    noisy()
    if "--open" in sys.argv[1:]:
        noisy(rim="open")
