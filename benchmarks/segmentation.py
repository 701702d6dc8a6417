"""Segmentation benchmark: napari-zonation against a plain scikit-image recipe, per scene class.

Scene classes. The *default* classes are the generator's default scenes (microlite
groundmass) over detector noise 1-5 % x 8/16-bit x pixel sizes 0.5-2 um, one class per noise
x pixel size. Beside them, one class per kind of what real BSE images carry
(``napari_zonation.synthetic.SCENE_KINDS``: ``glassy`` glass with real vesicles, some against
crystals; ``epoxy`` black epoxy and plucked holes; ``faint_rims`` olivine and pyroxene rims at
the glass grey; ``glass_laths`` plagioclase zoned across the groundmass grey; ``halo`` bright
edge halos; ``instrument`` scan lines, data bar, JPEG; ``glomerocrysts`` crystals touching
along cracks; ``needles`` needles and microlite clusters; ``real`` all at once), 8-bit, 3 %
noise, at the same pixel sizes.

For every scene it prints, for ``segment_crystals`` and for the recipe, in the same process:
instance precision, recall and F1 at IoU >= 0.5 against the generator's ground truth, the mean
IoU of the matched crystals, the mean distance between matched predicted and true outlines in
pixels (``napari_zonation.metrics.outline_distance``), the speed (megapixels per second of
wall time, best of ``--repeat`` runs) and the peak memory (tracemalloc, a separate run). Then
a per-class table and the goals: instance F1 >= 0.95, matched IoU >= 0.95 and outline
distance <= 1 px in every class.

It also scores the real plagioclase shipped with the package (Lubbers et al. 2022, MIT): the
IoU of ``segment_crystals``' crystal pixels against the author's own mask (the non-black
pixels, holes filled, specks under 400 um^2 left out).

**Held-out seeds.** Development uses seeds 0-2 (default classes) and 0-1 (the other kinds).
``--held-out`` runs the same grid on seeds 1000-1002 and 1000-1001 instead: they are never
looked at while developing, run once at the end, and their figures are reported separately.
``--new-held-out`` runs seeds 2000-2002 and 2000-2001, never run before (the 1000s have been
seen at the end of earlier rounds). ``--fresh-held-out`` runs seeds 3000-3002 and 3000-3001,
never run before (the 2000s have been seen at the end of earlier rounds); run it once, with
the method frozen, and report it separately. ``--final-held-out`` runs seeds 4000-4002 and
4000-4001, never run before (the 3000s have been seen too): once, with the method frozen,
on the new code and on the code it is compared with.

``--reference`` adds the one-shot path: ``segment_crystals(image, px, reference=mask)`` with
the true mask of one crystal of the scene (the largest one clear of the frame and of other
crystals) and, on the real plagioclase, the author's mask of the big crystal; while
``segment_crystals`` has no ``reference`` option it prints "not implemented".

    python benchmarks/segmentation.py            # full grid: 54 default + 54 other scenes
    python benchmarks/segmentation.py --quick    # one scene per class at 1 um/px and the
                                                 # default classes' 9 (a few minutes)
    python benchmarks/segmentation.py --kinds glassy,halo   # only these classes
    python benchmarks/segmentation.py --held-out # the held-out seeds (once, at the end)
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

from napari_zonation import ZonationInputError, make_thin_section, read_sem_tiff, segment_crystals
from napari_zonation._napari_io import PLAGIOCLASE_PIXEL_SIZE_UM, PLAGIOCLASE_TIFF
from napari_zonation._threads import resolve_threads
from napari_zonation.metrics import match_instances, outline_distance, outline_distances
from napari_zonation.synthetic import SCENE_KINDS


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


#: seeds used while developing, and the held-out seeds run once at the end (``--held-out``)
DEV_SEEDS = {"default": (0, 1, 2), "kinds": (0, 1)}
HELD_OUT_SEEDS = {"default": (1000, 1001, 1002), "kinds": (1000, 1001)}
NEW_HELD_OUT_SEEDS = {"default": (2000, 2001, 2002), "kinds": (2000, 2001)}
FRESH_HELD_OUT_SEEDS = {"default": (3000, 3001, 3002), "kinds": (3000, 3001)}
FINAL_HELD_OUT_SEEDS = {"default": (4000, 4001, 4002), "kinds": (4000, 4001)}
KIND_NOISE = 0.03
PIXEL_SIZES = (0.5, 1.0, 2.0)
GOALS = {"f1": 0.95, "iou": 0.95, "outline_px": 1.0}


def scene_grid(
    quick: bool,
    held_out: bool,
    kinds: list[str],
    new_held_out: bool = False,
    fresh_held_out: bool = False,
    final_held_out: bool = False,
) -> list[dict]:
    """The scenes to run: ``kind, seed, noise, bits, px`` per scene."""
    seeds = (
        FINAL_HELD_OUT_SEEDS if final_held_out
        else FRESH_HELD_OUT_SEEDS if fresh_held_out
        else NEW_HELD_OUT_SEEDS if new_held_out
        else HELD_OUT_SEEDS if held_out
        else DEV_SEEDS
    )
    grid = []
    if "default" in kinds:
        if quick:
            # every noise x pixel-size class once, 8 and 16 bits alternating
            for k, (noise, px) in enumerate(
                (n, p) for n in (0.01, 0.03, 0.05) for p in PIXEL_SIZES
            ):
                seed = seeds["default"][k % len(seeds["default"])]
                grid.append(dict(kind="default", seed=seed, noise=noise,
                                 bits=8 if k % 2 == 0 else 16, px=px))
        else:
            grid += [
                dict(kind="default", seed=seed, noise=noise, bits=bits, px=px)
                for seed in seeds["default"]
                for noise in (0.01, 0.03, 0.05)
                for bits in (8, 16)
                for px in PIXEL_SIZES
            ]
    for kind in kinds:
        if kind == "default":
            continue
        if quick:
            grid.append(dict(kind=kind, seed=seeds["kinds"][0], noise=KIND_NOISE, bits=8, px=1.0))
        else:
            grid += [
                dict(kind=kind, seed=seed, noise=KIND_NOISE, bits=8, px=px)
                for seed in seeds["kinds"]
                for px in PIXEL_SIZES
            ]
    return grid


def make_scene(spec: dict, size: int):
    """The synthetic scene of one grid entry (about the generator's default density)."""
    px = spec["px"]
    n = int(20 * (size * px / 768) ** 2) + 3
    options = {} if spec["kind"] == "default" else SCENE_KINDS[spec["kind"]]
    return make_thin_section(
        (size, size), n_crystals=n, pixel_size_um=px, noise=spec["noise"],
        bit_depth=spec["bits"], seed=spec["seed"], **options,
    )


def reference_mask(labels: np.ndarray) -> np.ndarray | None:
    """The true mask of one crystal to teach the one-shot path: the largest crystal clear of
    the image frame and of other crystals (None if there is none)."""
    ids, area = np.unique(labels[labels > 0], return_counts=True)
    touching: set[int] = set()
    for axis in (0, 1):
        a = np.moveaxis(labels, axis, 0)
        u, v = a[1:], a[:-1]
        m = (u != v) & (u > 0) & (v > 0)
        touching.update(u[m].tolist())
        touching.update(v[m].tolist())
    frame = set(np.unique(np.concatenate(
        [labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    for i in ids[np.argsort(-area)]:
        if int(i) not in touching and int(i) not in frame:
            return labels == i
    return None


def score(truth: np.ndarray, pred: np.ndarray) -> dict:
    """F1, precision, recall, matched IoU and mean outline distance (px) of a prediction."""
    m = match_instances(truth, pred)
    dist = outline_distances(truth, pred, m["pairs"]) if m["pairs"] else {}
    vals = np.array([v for v in dist.values() if np.isfinite(v)])
    return {k: m[k] for k in ("precision", "recall", "f1")} | {
        "iou": m["mean_iou"],
        "outline_px": float(vals.mean()) if vals.size else np.nan,
    }


class _NotImplemented(Exception):
    pass


def segment_with_reference(image, px, reference, threads=None, options=None):
    """``segment_crystals(image, px, reference=reference)``; raises ``_NotImplemented`` while
    ``segment_crystals`` has no ``reference`` option."""
    try:
        return segment_crystals(image, px, reference=reference, threads=threads,
                                **(options or {}))
    except (TypeError, ZonationInputError) as exc:
        if "reference" in str(exc) and ("unknown" in str(exc) or "unexpected" in str(exc)):
            raise _NotImplemented(str(exc)) from None
        raise


def real_plagioclase(threads=None, options=None, reference=False) -> list[dict]:
    """Score ``segment_crystals`` on the shipped real plagioclase against the author's mask."""
    image = read_sem_tiff(PLAGIOCLASE_TIFF)[0]
    px = PLAGIOCLASE_PIXEL_SIZE_UM
    author = ndi.binary_fill_holes(image > 1)
    parts, _ = ndi.label(author)
    area = np.bincount(parts.ravel())
    keep = area >= 400.0 / px**2
    keep[0] = False
    author = keep[parts]
    truth, _ = ndi.label(author)
    runs = [("napari-zonation", lambda: segment_crystals(image, px, threads=threads,
                                                         **(options or {})))]
    if reference:
        big = truth == np.argmax(np.bincount(truth.ravel())[1:]) + 1
        runs.append(("one-shot reference",
                     lambda: segment_with_reference(image, px, big, threads, options)))
    rows = []
    for name, fn in runs:
        try:
            t0 = time.perf_counter()
            lab = fn()
            seconds = time.perf_counter() - t0
        except _NotImplemented:
            print(f"real plagioclase, {name}: not implemented (segment_crystals has no "
                  "reference option yet)")
            continue
        pred = lab > 0
        iou = (pred & author).sum() / max((pred | author).sum(), 1)
        outline = outline_distance(author, pred)
        rows.append({"method": name, "crystal_iou": iou, "outline_px": outline,
                     "n_labels": int(lab.max()), "seconds": seconds})
        print(
            f"real plagioclase ({image.shape[0]} x {image.shape[1]}, {px} um/px), {name}: "
            f"crystal IoU vs the author's mask {iou:.3f} (goal >= 0.95), outline distance "
            f"{outline:.2f} px, {int(lab.max())} labels ({int(truth.max())} grains and "
            f"fragments of >= 400 um^2 in the mask); {seconds:.2f} s",
            flush=True,
        )
    return rows


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scene per class (a few min)")
    parser.add_argument("--held-out", action="store_true",
                        help="the held-out seeds (run once, at the end; report separately)")
    parser.add_argument("--new-held-out", action="store_true",
                        help="seeds 2000+, never run before (once, at the end; report "
                        "separately)")
    parser.add_argument("--fresh-held-out", action="store_true",
                        help="seeds 3000+, never run before (once, at the end, with the "
                        "method frozen; report separately)")
    parser.add_argument("--final-held-out", action="store_true",
                        help="seeds 4000+, never run before (once, at the end, with the "
                        "method frozen, and main's code on the same seeds; report separately)")
    parser.add_argument("--kinds", default=None,
                        help="comma-separated classes: default and/or " + ",".join(SCENE_KINDS))
    parser.add_argument("--reference", action="store_true",
                        help="also the one-shot path with the true mask of one crystal")
    parser.add_argument("--no-real", action="store_true", help="skip the real plagioclase")
    parser.add_argument("--no-recipe", action="store_true", help="skip the scikit-image recipe")
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

    kinds = ["default", *SCENE_KINDS] if args.kinds is None else args.kinds.split(",")
    unknown = [k for k in kinds if k != "default" and k not in SCENE_KINDS]
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown}; choose from default, "
                         + ", ".join(SCENE_KINDS))
    if args.new_held_out or args.fresh_held_out or args.final_held_out:
        args.held_out = True
    grid = scene_grid(
        args.quick, args.held_out, kinds, args.new_held_out, args.fresh_held_out,
        args.final_held_out,
    )
    size = min(args.size, 640) if args.quick else args.size
    repeat = 1 if args.quick else args.repeat
    tag = (
        "FINAL HELD-OUT" if args.final_held_out
        else "FRESH HELD-OUT" if args.fresh_held_out
        else "NEW HELD-OUT" if args.new_held_out
        else "HELD-OUT" if args.held_out
        else "development"
    )
    print(f"seeds: {tag}; {len(grid)} scenes of "
          f"{size} x {size}")

    if not args.no_real and not args.held_out:
        real_plagioclase(args.threads, options, args.reference)

    meths = methods(args.threads, options)
    if args.no_recipe:
        meths.pop("skimage recipe")
    rows = []
    header = (
        f"{'kind':<13} {'seed':>4} {'noise':>5} {'bits':>4} {'px_um':>5} {'n':>3}  "
        f"{'method':<19}{'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} {'outl':>6} {'MPix/s':>7}"
        f" {'peak_MB':>8}"
    )
    print(header)
    print("-" * len(header))
    reference_ok = args.reference
    for spec in grid:
        s = make_scene(spec, size)
        px = spec["px"]
        mpix = s.image.size / 1e6
        runs = dict(meths)
        if reference_ok:
            ref = reference_mask(s.labels)
            if ref is not None:
                runs["one-shot reference"] = (
                    lambda img, p, ref=ref: segment_with_reference(img, p, ref, args.threads,
                                                                   options)
                )
        for name, fn in runs.items():
            try:
                lab, seconds, peak = run_one(fn, s.image, px, repeat)
            except _NotImplemented:
                print("one-shot reference: not implemented (segment_crystals has no reference "
                      "option yet)")
                reference_ok = False
                continue
            m = score(s.labels, lab)
            row = {
                **spec,
                "px_um": px,
                "n_true": len(s.truth),
                "method": name,
                **m,
                "mpix_s": mpix / seconds,
                "peak_mb": peak / 2**20,
            }
            rows.append(row)
            print(
                f"{spec['kind']:<13} {spec['seed']:>4} {spec['noise']:>5.2f} {spec['bits']:>4}"
                f" {px:>5.1f} {len(s.truth):>3}  {name:<19}"
                f"{m['precision']:>6.3f} {m['recall']:>6.3f} {m['f1']:>6.3f} {m['iou']:>6.3f}"
                f" {m['outline_px']:>6.2f}{row['mpix_s']:>7.2f} {row['peak_mb']:>8.1f}",
                flush=True,
            )
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    report(df, args.held_out)
    return df


def report(df: pd.DataFrame, held_out: bool = False) -> None:
    """The per-class tables (medians), the goals and the speed ratio."""
    cols = ["precision", "recall", "f1", "iou", "outline_px", "mpix_s", "peak_mb"]
    pd.set_option("display.width", 200)
    tag = " (HELD-OUT seeds)" if held_out else ""
    for name in df.method.unique():
        ours = df[df.method == name]
        print(f"\nMedians per scene class (kind x noise x pixel size), {name}{tag}:")
        print(ours.groupby(["kind", "noise", "px_um"], sort=False)[cols].median()
              .round(3).to_string())
        print(f"\nMedians per kind, {name}{tag}:")
        per_kind = ours.groupby("kind", sort=False)[["f1", "iou", "outline_px", "mpix_s"]]
        print(per_kind.median().round(3).to_string())
    print("\nOverall medians:")
    summary = df.groupby("method")[cols].median()
    print(summary.round(3).to_string())
    ours = df[df.method == "napari-zonation"]
    if "skimage recipe" in summary.index and len(ours):
        key = ["kind", "seed", "noise", "bits", "px_um"]
        per_scene = (ours.set_index(key)["mpix_s"]
                     / df[df.method == "skimage recipe"].set_index(key)["mpix_s"])
        speed = summary.loc["napari-zonation", "mpix_s"] / summary.loc["skimage recipe", "mpix_s"]
        print(f"\nspeed ratio (median MPix/s, ours / recipe): {speed:.2f}x; per scene "
              f"{per_scene.min():.2f}x .. {per_scene.max():.2f}x")
    for name in [m for m in ("napari-zonation", "one-shot reference") if m in set(df.method)]:
        classes = df[df.method == name].groupby(["kind", "noise", "px_um"])[
            ["f1", "iou", "outline_px"]].median()
        ok = ((classes.f1 >= GOALS["f1"]) & (classes.iou >= GOALS["iou"])
              & (classes.outline_px <= GOALS["outline_px"]))
        print(
            f"goals{tag}, {name}: F1 >= {GOALS['f1']} in {(classes.f1 >= GOALS['f1']).mean():.0%}"
            f" of {len(classes)} classes, matched IoU >= {GOALS['iou']} in "
            f"{(classes.iou >= GOALS['iou']).mean():.0%}, outline <= {GOALS['outline_px']} px"
            f" in {(classes.outline_px <= GOALS['outline_px']).mean():.0%}; all three in "
            f"{ok.mean():.0%}"
        )


if __name__ == "__main__":
    main()
