"""One image (or the demo's synthetic section) run in memory and its results written."""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

from .._validation import ZonationInputError
from ._helpers import _OutFolder, _pipeline_options, _pixel_size
from .parser import EXIT_FAILED, EXIT_OK, PROG, _in_flags
from .summary import _Progress, _say, _say_summary

# --------------------------------------------------------------------------------------------
# the run


def _load(args, options: dict, progress: _Progress):
    """Check, then read or generate the image: (image, pixel size, title, truth or None)."""
    from ..io import image_header, read_image
    from ..pipeline import check_pipeline

    if args.command == "demo":
        from ..synthetic import make_thin_section

        px = float(inspect.signature(make_thin_section).parameters["pixel_size_um"].default)
        check_pipeline((args.size, args.size), px, **options)
        progress.stage = "generating the synthetic section"
        s = make_thin_section((args.size, args.size), n_crystals=args.n_crystals,
                              seed=args.seed)
        if s.truth.empty:
            raise ZonationInputError(
                f"the synthetic section of {args.size} px holds no crystal; use a larger --size."
            )
        _say(f"synthetic thin section {args.size}x{args.size} px, {len(s.truth)} true "
             f"crystals, seed {args.seed}")
        return s.image, s.pixel_size_um, f"synthetic sample (seed {args.seed})", s.truth

    path = args.image
    header = image_header(path)
    px = _pixel_size(
        args.pixel_size_um, header.pixel_size_um, path.name,
        header.info.get("pixel_size_source", ""),
    )
    check_pipeline(header.shape, px, itemsize=header.dtype.itemsize, **options)
    progress.stage = "reading the image"
    image, _, info = read_image(path)
    for note in info["notes"]:
        _say(f"note: {note}")
    from .._validation import check_image_content

    check_image_content(image, name=path.name)
    return image, px, path.name, None


def _write(out: _OutFolder, image, px, title, truth, result, note=None) -> dict:
    from ..io import write_results
    from ..report import report_figure

    with out.staging() as stage:
        written = write_results(stage, labels=result.labels, profiles=result.profiles,
                                crystals=result.crystals, pixel_size_um=px)
        report_figure(image, result.labels, result.crystals, result.profiles,
                      stage / "report.png", pixel_size_um=px, title=title, note=note)
        written["report"] = stage / "report.png"
        if truth is not None:
            truth.to_csv(stage / "truth.csv", index=False)
            written["truth"] = stage / "truth.csv"
    return {key: out.path / p.name for key, p in written.items()}

def _is_store(p: Path) -> bool:
    from ..mosaic import is_zarr_path

    return is_zarr_path(p)


def _run_in_memory(args, progress: _Progress, flags) -> int:
    from ..pipeline import run_pipeline

    options = _pipeline_options(args)
    segment = dict(options["segment_options"] or {})
    if getattr(args, "threads", None):
        segment["threads"] = args.threads
    if getattr(args, "scheduler", None):
        from .._cluster import connect

        connect(args.scheduler).close()  # it answers, before any work
        segment["client"] = args.scheduler  # the tiles of a large image on the cluster
    options["segment_options"] = segment or None
    out = _OutFolder(args.out)
    out.check()
    try:
        image, px, title, truth = _load(args, options, progress)
        t0 = time.perf_counter()
        result = run_pipeline(image, px, progress=progress, **options)
        elapsed = time.perf_counter() - t0
        table = result.crystals
        progress.stage = "writing the results"
        if result.empty_reason:
            if not args.allow_empty:
                reason = _in_flags(result.empty_reason, flags)
                print(f"{PROG}: error: no crystal found: {reason}. Nothing was written "
                      "(--allow-empty writes empty tables).", file=sys.stderr)
                return EXIT_FAILED
            note = f"no crystal found: {_in_flags(result.empty_reason, flags)}."
            written = _write(out, image, px, title, truth, result, note=note)
            _say(f"0 crystals found in {elapsed:.1f} s (allowed by --allow-empty)")
        else:
            written = _write(out, image, px, title, truth, result)
            _say_summary(table, result, elapsed, flags)
    finally:
        out.cleanup()
    for key, path in written.items():
        _say(f"wrote {key}: {path}")
    return EXIT_OK


