"""Draw docs/images/zoning_types.png: one example profile per zoning type, with the model
``describe_zoning`` chose for it.

    python docs/zoning_figure.py

The profiles are drawn from the randomised shape families (fixed seeds) and two real EPMA
olivine traverses shipped with the package (Kilauea, Mourey & Mutch, CC0).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_zonation import read_profiles  # noqa: E402
from napari_zonation._napari_io import DATA_DIR  # noqa: E402
from napari_zonation.descriptors import best_fit, describe_zoning  # noqa: E402
from napari_zonation.synthetic_profiles import make_random_profiles  # noqa: E402

OUT = Path(__file__).parent / "images" / "zoning_types.png"

# (family, seed, title)
EXAMPLES = [
    ("flat", 3, "unzoned"),
    ("step_erf", 5, "rim_brighter / rim_darker: one step"),
    ("multi_monotonic", 4, "multi_step: three or more levels"),
    ("gradient_hinge", 2, "gradient: slope to a core plateau"),
    ("gradient_full", 1, "gradient: slope to the deepest point"),
    ("osc_core", 2, "oscillatory: bands above a core level"),
    ("osc_under_rim_step", 3, "oscillatory: bands under a rim step"),
]


def _panel(ax, prof, title, ylabel, **opts):
    row = describe_zoning(prof, **opts).iloc[0]
    fit = best_fit(prof, **{k: v for k, v in opts.items() if k != "phase"})
    d = prof["distance_um"].to_numpy(float)
    v = prof["value"].to_numpy(float)
    if "sigma" in prof and prof["sigma"].notna().all():
        ax.errorbar(d, v, prof["sigma"], fmt="o", ms=2.5, lw=0.6, color="0.3", label="data")
    else:
        ax.plot(d, v, "o", ms=2.5, color="0.3", label="data")
    x = np.linspace(d.min(), d.max(), 400)
    ax.plot(x, fit.predict(x), color="tab:red", lw=1.6, label=row["best_model"])
    for p in row["step_positions_um"]:
        ax.axvline(p, color="tab:blue", lw=0.7, ls="--")
    text = f"zoning_type = {row['zoning_type']}\n{row['model_detail']}"
    if row["interpretation"] in ("normal", "reverse"):
        text += f"\n{row['quantity']}: {row['interpretation']}"
    ax.text(0.98, 0.04, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("distance from the rim (um)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def main() -> None:
    fig, axs = plt.subplots(3, 3, figsize=(12, 9.5))
    axs = axs.ravel()
    for ax, (family, seed, title) in zip(axs, EXAMPLES, strict=False):
        prof, _ = make_random_profiles(1, families=(family,), seed=seed, noise=(0.02, 0.03))
        _panel(ax, prof, title, "value (grey)")
    real = read_profiles(
        DATA_DIR / "olivine_kilauea" / "olivine_traverses.csv",
        distance="distance_um",
        value="fo",
        label="profile",
        sigma="auto",
    )
    for ax, name in zip(axs[len(EXAMPLES):], ("Ol1A", "Ol13A"), strict=True):
        _panel(ax, real[real["label"] == name], f"real olivine {name} (EPMA, Fo)", "Fo (mol%)",
               phase="olivine")
    fig.suptitle("Zoning types: data, the model describe_zoning chose, its step positions",
                 fontsize=11)
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
