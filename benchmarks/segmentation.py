"""Segmentation benchmark: napari-zonation against a plain scikit-image recipe.

For each synthetic scene (seeds x detector noise 1-5 % x 8/16-bit x pixel sizes 0.5-2 um) it
prints, for ``segment_crystals`` and for the recipe, in the same process: instance precision,
recall and F1 at IoU >= 0.5 against the generator's ground truth, the mean IoU of the matched
crystals, the speed (megapixels per second of wall time, best of ``--repeat`` runs) and the peak
memory (tracemalloc, a separate run). Then medians per scene class and overall, and the speed
ratio. The project's goals: F1 >= 0.95 and matched IoU >= 0.92 per scene class, >= 3 x the
recipe's speed.

    python benchmarks/segmentation.py            # full grid, 54 scenes (about 20 minutes)
    python benchmarks/segmentation.py --quick    # 9 scenes, one per class (under 2 minutes)
    python benchmarks/segmentation.py --large    # one 8192 x 8192 mosaic, tiled: time, RSS

``--large`` builds an 8192 x 8192 section at 1 um per pixel from 4 x 4 distinct 2048 x 2048
synthetic scenes (seeds 100-115; ``make_thin_section`` at 8192 x 8192 needs several GB and
minutes of its own), segments it with automatic tiling (numpy input, then the same image as a
dask array when dask is installed) and prints wall time, F1 and matched IoU against the truth,
and the process's peak resident memory during the call (Linux ``VmHWM``, reset before it).
``--cache FILE.npz`` keeps the mosaic between runs.

``--threads N`` sets ``segment_crystals``' worker threads (default: automatic, ``min(4, CPUs)``;
1: serial); the header prints the count used. The recipe is single-threaded scikit-image, as a
user would run it.
``--option KEY=VALUE`` (repeatable) passes an option to ``segment_crystals`` on the grid, e.g.
``--option contact_um=0 --option trim_um=0 --option split_touching=false`` to see what a stage
costs and what it buys.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np
import pandas as pd
from _memory import reset_peak_rss, rss_mb
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

from napari_zonation import make_thin_section, segment_crystals
from napari_zonation._threads import resolve_threads
from napari_zonation.metrics import match_instances


def match(truth: np.ndarray, pred: np.ndarray, iou_min: float = 0.5) -> dict:
    """One-to-one instance matching at IoU >= iou_min (napari_zonation.metrics)."""
    m = match_instances(truth, pred, iou_min)
    return {k: m[k] for k in ("precision", "recall", "f1")} | {"iou": m["mean_iou"]}


def recipe(image: np.ndarray, pixel_size_um: float, min_area_um2: float = 400.0) -> np.ndarray:
    """The plain scikit-image recipe, with the same pixel size and size limit.

    Gaussian smoothing (1.5 um), deviation from the dominant grey mode (the groundmass) with
    an Otsu threshold, opening (2 um), size filter, hole filling, and a watershed of the
    distance transform from its peaks (at least 10 um apart).
    """
    px = pixel_size_um
    img = image.astype(np.float64)
    smooth = filters.gaussian(img, sigma=1.5 / px, preserve_range=True)
    hist, edges = np.histogram(smooth, bins=256)
    mode = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
    dev = np.abs(smooth - mode)
    mask = dev > filters.threshold_otsu(dev)
    mask = ndi.binary_opening(mask, structure=morphology.disk(max(1, round(2.0 / px))))
    lab = measure.label(mask)
    area = np.bincount(lab.ravel())
    keep = area >= min_area_um2 / px**2
    keep[0] = False
    mask = ndi.binary_fill_holes(keep[lab])
    dist = ndi.distance_transform_edt(mask)
    lab = measure.label(mask)
    peaks = feature.peak_local_max(dist, min_distance=max(1, round(10.0 / px)), labels=lab)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-dist, markers, mask=mask).astype(np.int32)


def methods(threads: int | None = None, options: dict | None = None) -> dict:
    """The two methods compared: ``segment_crystals`` (with ``threads`` and ``options``) and
    the recipe."""
    opts = options or {}
    return {
        "napari-zonation": lambda img, px: segment_crystals(img, px, threads=threads, **opts),
        "skimage recipe": recipe,
    }


def run_one(fn, image, px, repeat: int):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(image, px)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn(image, px)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, best, peak


def large_mosaic(side: int = 8192, piece: int = 2048, cache: str | None = None):
    """An ``side`` x ``side`` 8-bit section at 1 um/px: a mosaic of distinct synthetic scenes.

    Returns ``(image, truth_labels)`` (uint8, int32); truth ids are offset per piece.
    """
    if cache and os.path.exists(cache):
        with np.load(cache) as z:
            return z["image"], z["labels"]
    image = np.zeros((side, side), np.uint8)
    truth = np.zeros((side, side), np.int32)
    n_per = int(20 * (piece / 768) ** 2) + 3
    offset, k = 0, 0
    for r in range(0, side, piece):
        for c in range(0, side, piece):
            s = make_thin_section(
                (piece, piece), n_crystals=n_per, pixel_size_um=1.0, noise=0.02, seed=100 + k
            )
            image[r : r + piece, c : c + piece] = s.image
            truth[r : r + piece, c : c + piece] = np.where(s.labels > 0, s.labels + offset, 0)
            offset += int(s.labels.max())
            k += 1
            print(f"  mosaic piece {k}/{(side // piece) ** 2}", flush=True)
    if cache:
        np.savez(cache, image=image, labels=truth)
    return image, truth


def run_large(
    cache: str | None = None, tile_size: int | None = None, threads: int | None = None
) -> dict:
    """Segment the 8192 x 8192 mosaic (tiled); print time, accuracy and peak RSS."""
    t0 = time.perf_counter()
    image, truth = large_mosaic(cache=cache)
    print(f"mosaic {image.shape} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    inputs = {"numpy": image}
    try:
        import dask.array as da

        inputs["dask"] = da.from_array(image, chunks=(1024, 1024))
    except ImportError:
        pass
    out = {}
    n_truth = int(np.count_nonzero(np.bincount(truth.ravel())[1:]))
    for name, img in inputs.items():
        base = rss_mb()
        reset = reset_peak_rss()
        t = time.perf_counter()
        lab, info = segment_crystals(
            img, 1.0, tile_size=tile_size, return_info=True, threads=threads
        )
        seconds = time.perf_counter() - t
        peak = rss_mb("VmHWM")
        m = match(truth, lab)
        out[name] = {"seconds": seconds, "peak_rss_mb": peak, **m}
        print(
            f"8192 x 8192 ({name}, {info['threads']} threads): {seconds:.1f} s "
            f"({image.size / 1e6 / seconds:.2f} MPix/s), "
            f"{info['n_tiles']} tiles, {info['n_crystals']} crystals (truth {n_truth}),"
            f" second looks {info.get('n_regrown', 0)}, still cut {info.get('n_truncated', 0)}; "
            f"P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} IoU {m['iou']:.3f}; "
            f"peak RSS {peak:.0f} MB (process before the call {base:.0f} MB"
            f"{'' if reset else ', peak not reset: since start'}); goal < 3000 MB",
            flush=True,
        )
        del lab
    return out


def parse_option(text: str) -> tuple[str, object]:
    """``"contact_um=0"`` -> ``("contact_um", 0.0)``; true/false/none as Python values."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--option {text!r}: expected KEY=VALUE, e.g. contact_um=0")
    words = {"true": True, "false": False, "none": None}
    if value.lower() in words:
        return key, words[value.lower()]
    try:
        return key, float(value)
    except ValueError:
        msg = f"--option {text!r}: VALUE must be a number, true, false or none"
        raise SystemExit(msg) from None


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-minute subset of the grid")
    parser.add_argument("--size", type=int, default=768, help="scene side in pixels")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per method (best)")
    parser.add_argument("--csv", default=None, help="also write the per-scene table here")
    parser.add_argument(
        "--large", action="store_true", help="only the 8192 x 8192 tiled run (time, RSS, F1)"
    )
    parser.add_argument("--cache", default=None, help="npz file keeping the --large mosaic")
    parser.add_argument("--tile-size", type=int, default=None, help="tile side for --large")
    parser.add_argument(
        "--threads", type=int, default=None, help="segment_crystals threads (default automatic)"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a segment_crystals option (number, true/false), e.g. contact_um=0; repeatable",
    )
    args = parser.parse_args(argv)
    options = dict(parse_option(o) for o in args.option)
    n_threads = resolve_threads(args.threads)
    print(
        f"segment_crystals threads: {n_threads}"
        f"{' (automatic)' if args.threads is None else ''}; recipe: single-threaded scikit-image"
        + (f"; segment_crystals options: {options}" if options else "")
    )
    if args.large:
        return pd.DataFrame(run_large(args.cache, args.tile_size, args.threads)).T

    if args.quick:
        # every noise x pixel-size class once, 8 and 16 bits alternating, at 640 x 640
        grid = [
            (k % 3, noise, 8 if k % 2 == 0 else 16, px)
            for k, (noise, px) in enumerate(
                (n, p) for n in (0.01, 0.03, 0.05) for p in (0.5, 1.0, 2.0)
            )
        ]
        size, repeat = min(args.size, 640), 1
    else:
        grid = [
            (seed, noise, bits, px)
            for seed in (0, 1, 2)
            for noise in (0.01, 0.03, 0.05)
            for bits in (8, 16)
            for px in (0.5, 1.0, 2.0)
        ]
        size, repeat = args.size, args.repeat

    rows = []
    header = (
        f"{'seed':>4} {'noise':>5} {'bits':>4} {'px_um':>5} {'n':>3}  {'method':<16}"
        f"{'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} {'MPix/s':>7} {'peak_MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for seed, noise, bits, px in grid:
        n = int(20 * (size * px / 768) ** 2) + 3  # about the generator's default density
        s = make_thin_section(
            (size, size), n_crystals=n, pixel_size_um=px, noise=noise, bit_depth=bits, seed=seed
        )
        mpix = s.image.size / 1e6
        for name, fn in methods(args.threads, options).items():
            lab, seconds, peak = run_one(fn, s.image, px, repeat)
            m = match(s.labels, lab)
            row = {
                "seed": seed,
                "noise": noise,
                "bits": bits,
                "px_um": px,
                "n_true": len(s.truth),
                "method": name,
                **m,
                "mpix_s": mpix / seconds,
                "peak_mb": peak / 2**20,
            }
            rows.append(row)
            print(
                f"{seed:>4} {noise:>5.2f} {bits:>4} {px:>5.1f} {len(s.truth):>3}  {name:<16}"
                f"{m['precision']:>6.3f} {m['recall']:>6.3f} {m['f1']:>6.3f} {m['iou']:>6.3f}"
                f"{row['mpix_s']:>7.2f} {row['peak_mb']:>8.1f}",
                flush=True,
            )
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)

    cols = ["precision", "recall", "f1", "iou", "mpix_s", "peak_mb"]
    pd.set_option("display.width", 160)
    print("\nMedians per scene class (noise x pixel size), napari-zonation:")
    ours = df[df.method == "napari-zonation"]
    print(ours.groupby(["noise", "px_um"])[cols].median().round(3).to_string())
    print("\nMedians per bit depth, napari-zonation:")
    print(ours.groupby("bits")[cols].median().round(3).to_string())
    print("\nOverall medians:")
    summary = df.groupby("method")[cols].median()
    print(summary.round(3).to_string())
    speed = summary.loc["napari-zonation", "mpix_s"] / summary.loc["skimage recipe", "mpix_s"]
    per_scene = (
        ours.set_index(["seed", "noise", "bits", "px_um"])["mpix_s"]
        / df[df.method == "skimage recipe"].set_index(["seed", "noise", "bits", "px_um"])["mpix_s"]
    )
    print(
        f"\nspeed ratio (median MPix/s, ours / recipe): {speed:.2f}x; per scene "
        f"{per_scene.min():.2f}x .. {per_scene.max():.2f}x"
    )
    classes = ours.groupby(["noise", "px_um"])[["f1", "iou"]].median()
    ok_f1 = (classes.f1 >= 0.95).mean()
    ok_iou = (classes.iou >= 0.92).mean()
    print(
        f"goals: F1 >= 0.95 in {ok_f1:.0%} of scene classes, matched IoU >= 0.92 in "
        f"{ok_iou:.0%}, speed >= 3x recipe: {'yes' if speed >= 3 else 'no'} ({speed:.2f}x)"
    )
    return df


if __name__ == "__main__":
    main()
