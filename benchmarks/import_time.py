"""Time ``import napari_zonation`` from one or more source trees, runs interleaved.

    python benchmarks/import_time.py [--runs 5] SRC [SRC ...]

Each run is a fresh ``python -X importtime -c "import napari_zonation"`` with ``PYTHONPATH``
set to one ``SRC`` folder (for example the ``src`` of an older checkout, then this one's);
the runs alternate between the trees so that a busy machine slows them alike. Printed per
tree: the median over the runs of the package's cumulative import time (from
``-X importtime``), and whether matplotlib, rich, scikit-learn and scipy.stats were loaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HEAVY = ("matplotlib", "rich", "sklearn", "scipy.stats", "skimage.feature")


def one_run(src: str) -> tuple[float, dict[str, bool]]:
    """Seconds ``import napari_zonation`` took from ``src``, and which heavy modules it loaded."""
    env = dict(os.environ, PYTHONPATH=src)
    code = (
        "import sys, napari_zonation; "
        f"print(','.join(str(m in sys.modules) for m in {HEAVY!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env, capture_output=True, text=True, check=True,
    )
    total = None
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "napari_zonation":
            total = int(parts[1]) / 1e6
    loaded = dict(zip(HEAVY, (v == "True" for v in out.stdout.strip().split(",")), strict=True))
    return total, loaded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="+", help="source folders holding napari_zonation")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {s: [] for s in args.src}
    loaded: dict[str, dict[str, bool]] = {}
    for _ in range(args.runs):
        for src in args.src:
            t, loaded[src] = one_run(src)
            times[src].append(t)
    for src in args.src:
        heavy = ", ".join(m for m, v in loaded[src].items() if v) or "none"
        runs = " ".join(f"{t:.2f}" for t in times[src])
        print(f"{src}: median {statistics.median(times[src]):.2f} s (runs: {runs}); "
              f"heavy modules loaded: {heavy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
