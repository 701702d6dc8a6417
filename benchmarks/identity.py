"""Save the outputs of the core on real data and a synthetic scene, or compare them to a save.

    python benchmarks/identity.py save BEFORE.pkl      # on the commit before a refactoring
    python benchmarks/identity.py compare BEFORE.pkl   # after it: exits 1 on any difference

What is saved: the diffusion fits (every output column, both olivine laws, the one-step and
two-stage models, the ``erf`` quick look) of the Kilauea olivine traverses read with
``read_profiles``; the plagioclase Mg fit of the shipped LA-ICP-MS traverse; a small
synthetic thin section's labels, crystal table, rim profiles and the diffusion fit of those
profiles. Tables must be equal to the bit (NaN equal to NaN), labels exactly.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import napari_zonation as nz
from napari_zonation.diffusion import fit_diffusion

sys.path.insert(0, str(Path(__file__).parent))
from diffusion import KILAUEA, kilauea_conditions  # noqa: E402


def outputs(n_samples: int = 200) -> dict[str, object]:
    """Every output compared, by name."""
    out: dict[str, object] = {}
    prof = nz.read_profiles(KILAUEA / "olivine_traverses.csv", distance="distance_um",
                            value="fo", label="profile", sigma="fo_err")
    out["kilauea_profiles"] = prof
    meta = pd.read_csv(KILAUEA / "olivine_profiles_metadata.csv")
    cond = kilauea_conditions(meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for law in ("dfens", "dc07"):
            for model, kind in (("step", "1-step"), ("two_stage", "2-step"), ("erf", "1-step")):
                names = meta.loc[meta.model == kind, "profile"]
                out[f"kilauea_{law}_{model}"] = fit_diffusion(
                    prof[prof["label"].isin(names)], mineral="olivine", d_law=law, model=model,
                    conditions=cond[cond.label.isin(names)], n_samples=n_samples)
        try:
            out["plagioclase_mg"] = _plagioclase()
        except Exception as exc:  # noqa: BLE001 - the same failure before and after is identity
            out["plagioclase_mg"] = f"{type(exc).__name__}: {exc}"
        s = nz.make_thin_section(shape=(256, 256), n_crystals=6, seed=3,
                                 size_um=(40.0, 90.0))
        labels = nz.segment_crystals(s.image, pixel_size_um=s.pixel_size_um)
        out["synthetic_labels"] = labels
        out["synthetic_table"] = nz.crystal_table(s.image, labels, s.pixel_size_um)
        rims = nz.rim_profiles(s.image, labels, pixel_size_um=s.pixel_size_um)
        out["synthetic_rims"] = rims
        out["synthetic_fit"] = fit_diffusion(rims, diffusivity_um2_s=1e-6, n_samples=n_samples)
    return out


def _plagioclase() -> pd.DataFrame:
    import diffusion as bench  # noqa: PLC0415 - the benchmark's own set-up

    return bench.run_plagioclase().drop(columns=["seconds"])


def same(a: object, b: object) -> bool:
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        try:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        except AssertionError:
            return False
        return True
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def main(argv: list[str], outputs=outputs) -> int:
    """``save PATH`` or ``compare PATH`` the dict ``outputs()`` gives (exit code 1: different)."""
    mode, path = argv
    now = outputs()
    if mode == "save":
        Path(path).write_bytes(pickle.dumps(now))
        print(f"saved {len(now)} outputs to {path}")
        return 0
    before = pickle.loads(Path(path).read_bytes())
    bad = [k for k in before if k not in now or not same(before[k], now[k])]
    for k in before:
        n = len(before[k]) if hasattr(before[k], "__len__") else 1
        print(f"{k:28s} {n:6d} rows  {'DIFFERENT' if k in bad else 'identical'}")
    print(f"{len(before) - len(bad)}/{len(before)} outputs identical")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
