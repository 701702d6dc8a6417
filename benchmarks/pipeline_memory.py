"""Peak memory of ``run_pipeline`` per image pixel, behind the command line's memory check.

    python benchmarks/pipeline_memory.py            # 1024 and 2048 px scenes
    python benchmarks/pipeline_memory.py --quick    # 1024 px only
    python benchmarks/pipeline_memory.py 3072       # any sizes

Each size runs in its own process (a fresh peak), on an 8-bit synthetic section: prints the
crystals found, the time, the peak resident memory above the process's start and that peak
per pixel, beside ``PIPELINE_BYTES_PER_PIXEL``, the figure the check uses (it must stay
above every measured value).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

_ONE = """
import gc, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from _memory import reset_peak_rss, rss_mb
from napari_zonation import make_thin_section
from napari_zonation.pipeline import run_pipeline
n = {n}
s = make_thin_section((n, n), n_crystals=max(8, n * n // 30000), seed=3)
img = np.clip(s.image, 0, 255).astype(np.uint8)
del s
gc.collect()
base = rss_mb()
reset_peak_rss()
t = time.perf_counter()
r = run_pipeline(img, 1.0)
dt = time.perf_counter() - t
peak = rss_mb("VmHWM") - base
print(f"{{n}}\\t{{len(r.crystals)}}\\t{{dt:.1f}}\\t{{peak:.0f}}\\t{{peak * 2**20 / (n * n):.1f}}")
"""


def main() -> None:
    from napari_zonation._validation import PIPELINE_BYTES_PER_PIXEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, help="image sides in pixels")
    parser.add_argument("--quick", action="store_true", help="1024 px only")
    args = parser.parse_args()
    sizes = args.sizes or ([1024] if args.quick else [1024, 2048])
    print(f"PIPELINE_BYTES_PER_PIXEL = {PIPELINE_BYTES_PER_PIXEL}")
    print("side_px\tcrystals\tseconds\tpeak_MB\tbytes_per_px")
    for n in sizes:
        code = _ONE.format(here=str(HERE), n=int(n))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        print(done.stdout.strip() or done.stderr.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
