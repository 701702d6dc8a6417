"""Mosaics (out of core, window by window) and batches of sections (one folder each, and a
combined crystal table)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .._validation import ZonationInputError
from ._helpers import _OutFolder, _pipeline_options, _pixel_size
from .parser import EXIT_FAILED, EXIT_OK, PROG, _in_flags
from .run import _run_in_memory
from .summary import _one_line, _Progress, _say, _say_summary

# --------------------------------------------------------------------------------------------
# whole-section mosaics and batches of sections

#: Longest side (pixels) of the overview the report of a mosaic draws.
REPORT_SIDE = 2048


def _client(args):
    """The dask client of ``--scheduler`` (connected before any work), or None."""
    if not getattr(args, "scheduler", None):
        return None
    from .._cluster import connect

    client = connect(args.scheduler)
    n = sum(client.nthreads().values())
    _say(f"dask scheduler {args.scheduler}: {len(client.nthreads())} worker(s), {n} thread(s)")
    return client


def _write_profiles(path: Path, files: list) -> int:
    import pandas as pd

    from ..streaming import iter_profiles

    rows, header = 0, True
    with open(path, "w", newline="") as fh:
        for part in iter_profiles(files):
            part.to_csv(fh, index=False, header=header)
            header = False
            rows += len(part)
        if header:
            pd.DataFrame(columns=["label", "distance_um", "value"]).to_csv(fh, index=False)
    return rows


def _overview(mosaic, labels_levels, shape) -> tuple:
    """The image and labels subsampled to at most REPORT_SIDE pixels a side (every s-th
    pixel, s a power of two: the labels' own pyramid level), and s."""
    import numpy as np

    k = 0
    while max(-(-shape[0] // 2**k), -(-shape[1] // 2**k)) > REPORT_SIDE:
        k += 1
    k = min(k, len(labels_levels) - 1)
    s = 2**k
    lab = np.asarray(labels_levels[k])
    img = np.asarray(mosaic.data[::s, ::s])
    return img, lab, s


def _report(stage: Path, mosaic, result, px, title, note=None) -> Path:
    import pandas as pd

    from ..mosaic import open_labels
    from ..report import report_figure
    from ..streaming import SHAPE_COLUMNS, iter_profiles

    labels = open_labels(result.labels_path)
    img, lab, s = _overview(mosaic, labels.levels, mosaic.shape)
    parts = list(iter_profiles(result.profile_files, SHAPE_COLUMNS))
    prof = (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=["label", "distance_um", "value"]))
    if s > 1:
        note_s = f"map: every {s}th pixel of the {mosaic.shape[0]} x {mosaic.shape[1]} px section"
        title = f"{title} ({note_s})"
    return report_figure(img, lab, result.crystals, prof, stage / "report.png",
                         pixel_size_um=px * s, title=title, note=note)


def run_mosaic(args, progress: _Progress, flags, *, quiet_skip: bool = False) -> int:
    """``run`` on one mosaic: labels to ``--out/labels.zarr``, every stage streamed."""
    import numpy as np

    from ..batch import ProgressBar
    from ..mosaic import open_mosaic
    from ..pipeline import check_pipeline, run_mosaic_pipeline

    options = _pipeline_options(args)
    backend = options.pop("backend")
    out = _OutFolder(args.out)
    target = Path(args.out) / "labels.zarr"
    if target.exists() and not args.overwrite:
        raise ZonationInputError(
            f"{target} already exists; pass --overwrite to replace it, or choose another "
            "--out."
        )
    out.check()
    written: dict = {}
    try:
        progress.stage = "opening the mosaic"
        mosaic = open_mosaic(args.image, allow_missing_chunks=args.allow_missing_chunks)
        px = _pixel_size(
            args.pixel_size_um, mosaic.pixel_size_um, Path(args.image).name,
            mosaic.info.get("pixel_size_source", ""),
        )
        for note in mosaic.info.get("notes", []):
            _say(f"note: {note}")
        h, w = mosaic.shape
        check_pipeline(mosaic.shape, px, itemsize=np.dtype(mosaic.data.dtype).itemsize,
                       backend=backend, out_of_core=True, **options)
        _say(f"mosaic {h} x {w} px ({mosaic.source}), read window by window")
        client = _client(args)
        bar = ProgressBar()

        def report(stage, done, total):
            progress.stage = stage
            bar(stage, done, total)

        t0 = time.perf_counter()
        try:
            with out.staging() as stage:
                result = run_mosaic_pipeline(
                    mosaic.data, px, stage / "labels.zarr", workdir=stage / ".work",
                    client=client, threads=args.threads, progress=report, **options,
                )
                elapsed = time.perf_counter() - t0
                progress.stage = "writing the results"
                note = None
                if result.empty_reason:
                    reason = _in_flags(result.empty_reason, flags)
                    if not args.allow_empty:
                        print(f"{PROG}: error: no crystal found: {reason}. Nothing was written "
                              "(--allow-empty writes empty tables).", file=sys.stderr)
                        raise _Empty
                    note = f"no crystal found: {reason}."
                from ..io import write_results

                write_results(stage, crystals=result.crystals)
                _write_profiles(stage / "profiles.csv", result.profile_files)
                _report(stage, mosaic, result, px, Path(args.image).name, note)
                shutil.rmtree(stage / ".work", ignore_errors=True)
                written = {"labels": "labels.zarr", "profiles": "profiles.csv",
                           "crystals": "crystals.csv", "report": "report.png"}
        finally:
            if client is not None:
                client.close()
    except _Empty:
        return EXIT_FAILED
    finally:
        out.cleanup()
    table = result.crystals
    if result.empty_reason:
        _say(f"0 crystals found in {elapsed:.1f} s (allowed by --allow-empty)")
    else:
        _say_summary(table, result, elapsed, flags,
                     where=f" on {result.stats.get('where', 'this machine')}")
    for key, name in written.items():
        _say(f"wrote {key}: {Path(args.out) / name}")
    return EXIT_OK


class _Empty(Exception):
    """A mosaic without crystals (reported already)."""


def run_batch(args, sections, progress: _Progress, flags) -> int:
    """``run`` on several sections: one result folder each, a combined crystal table and a
    table of the sections' status; sections an earlier run finished are skipped."""
    import numpy as np

    from ..batch import (
        combine_tables,
        is_done,
        mark_done,
        write_sections_table,
    )
    from ..mosaic import is_mosaic

    out = _OutFolder(args.out)
    out.check()
    _pipeline_options(args)  # the flags' own errors, before the first section
    if args.scheduler:
        _client(args).close()  # answers, before the first section
    records, failed = [], 0
    n = len(sections)
    for i, section in enumerate(sections, start=1):
        folder = Path(args.out) / section.name
        if is_done(folder) and not args.overwrite:
            _say(f"[section {i}/{n}] {section.name}: done by an earlier run, skipped "
                 "(--overwrite redoes it)")
            records.append({"section": section.name, "input": str(section.path),
                            "status": "done earlier", "reason": "", "seconds": np.nan})
            continue
        _say(f"[section {i}/{n}] {section.name} ({section.path})")
        sub = argparse.Namespace(**vars(args))
        sub.image, sub.out = section.path, folder
        sub.overwrite = True  # a folder without the completion mark is this batch's own
        t0 = time.perf_counter()
        status, reason = "done", ""
        try:
            sub_progress = _Progress()
            if is_mosaic(section.path):
                code = run_mosaic(sub, sub_progress, flags)
            else:
                code = _run_in_memory(sub, sub_progress, flags)
            if code != EXIT_OK:
                status, reason = "failed", "no crystal found (see the message above)"
        except KeyboardInterrupt:
            raise
        except ZonationInputError as exc:
            status, reason = "failed", _in_flags(_one_line(exc), flags)
            print(f"{PROG}: error: {section.name}: {reason}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - the batch goes on; the reason is recorded
            status = "failed"
            reason = f"{type(exc).__name__}: {_one_line(exc)}"
            print(f"{PROG}: error: {section.name}: the run failed: {reason}", file=sys.stderr)
        seconds = time.perf_counter() - t0
        if status == "done":
            n_crystals = _count_rows(folder / "crystals.csv")
            mark_done(folder, section, n_crystals=n_crystals, seconds=round(seconds, 1))
        else:
            failed += 1
        records.append({"section": section.name, "input": str(section.path), "status": status,
                        "reason": reason, "seconds": round(seconds, 1)})
    combined, rows = combine_tables(Path(args.out), sections)
    table = write_sections_table(Path(args.out), records)
    done = sum(r["status"] != "failed" for r in records)
    _say(f"batch: {done} of {n} section(s) done, {failed} failed")
    if combined is not None:
        _say(f"wrote combined crystals: {combined} ({rows} crystals)")
    _say(f"wrote sections: {table}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def _count_rows(path: Path) -> int:
    import pandas as pd

    if not path.is_file():
        return 0
    return int(sum(len(part) for part in pd.read_csv(path, chunksize=100_000,
                                                     usecols=[0])))
