"""Batches of sections for the command line: which inputs are sections, where each one's
results go, which are already done (a run resumed after an interruption skips them), the
combined crystal table, and a progress bar with the time left.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ._validation import ZonationInputError
from .io import IMAGE_SUFFIXES
from .mosaic import is_zarr_path

#: File written last into a section's result folder: its presence means the section is done.
DONE_MARKER = ".napari-zonation-done.json"
#: Combined outputs of a batch, in the output folder.
COMBINED_TABLE = "crystals.csv"
SECTIONS_TABLE = "sections.csv"


@dataclass(frozen=True)
class Section:
    """One input of a batch: its ``name`` (its result folder) and ``path``."""

    name: str
    path: Path


def _is_input(p: Path) -> bool:
    return is_zarr_path(p) or (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_sections(paths: Iterable[str | os.PathLike]) -> list[Section]:
    """The sections named on the command line: images, zarr stores, and the images and zarr
    stores inside folders (not recursively), in the order given (a folder's sorted by name).

    Each gets a distinct result-folder name: its file name without suffix, with the suffix
    added when two would clash.

    Raises
    ------
    ZonationInputError
        A path that does not exist, a folder without images, or no section at all.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ZonationInputError(f"no such file or folder: {p}")
        if is_zarr_path(p) or p.is_file():
            found.append(p)
            continue
        inside = sorted(c for c in p.iterdir() if not c.name.startswith(".") and _is_input(c))
        if not inside:
            raise ZonationInputError(
                f"the folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)}) and no .zarr "
                "store; give image files or a folder of them."
            )
        found.extend(inside)
    if not found:
        raise ZonationInputError("no image given; name image files, .zarr stores or folders.")
    stems = [p.stem if p.suffix else p.name for p in found]
    names, seen = [], set()
    for p, stem in zip(found, stems, strict=True):
        name = stem if stems.count(stem) == 1 else f"{stem}_{p.suffix.lstrip('.') or 'dir'}"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(re.sub(r"[^\w.+-]", "_", name))
    return [Section(n, p) for n, p in zip(names, found, strict=True)]


def is_done(folder: Path) -> bool:
    """Whether a section's result folder was completed by an earlier run."""
    return (Path(folder) / DONE_MARKER).is_file()


def mark_done(folder: Path, section: Section, **facts) -> None:
    """Write the completion marker (last, after every result of the section)."""
    record = {"section": section.name, "input": str(section.path),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **facts}
    tmp = Path(folder) / (DONE_MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, Path(folder) / DONE_MARKER)


def combine_tables(out: Path, sections: list[Section]) -> tuple[Path | None, int]:
    """``crystals.csv`` of every done section, one after another with a ``section`` column
    first; written under a temporary name and renamed. Returns its path (None when no section
    is done) and its row count."""
    out = Path(out)
    target = out / COMBINED_TABLE
    tmp = out / (COMBINED_TABLE + ".partial")
    rows, header = 0, True
    with open(tmp, "w", newline="") as fh:
        for s in sections:
            table = out / s.name / "crystals.csv"
            if not (is_done(out / s.name) and table.is_file()):
                continue
            for part in pd.read_csv(table, chunksize=50_000, low_memory=False):
                part.insert(0, "section", s.name)
                part.to_csv(fh, index=False, header=header)
                header = False
                rows += len(part)
    if header:  # nothing written
        tmp.unlink()
        return None, 0
    os.replace(tmp, target)
    return target, rows


def write_sections_table(out: Path, records: list[dict]) -> Path:
    """``sections.csv``: one row per section (status, reason, crystals, seconds)."""
    path = Path(out) / SECTIONS_TABLE
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressBar:
    """``progress(stage, done, total)`` drawn as a bar with the time left, per stage.

    On a terminal the bar is redrawn in place (on stderr); otherwise (a log file) a line is
    printed at each tenth of a stage. The time left is the stage's elapsed time per item
    times the items left.
    """

    UNITS = {"segment": "tiles", "index": "strips", "levels": "strips",
             "fields": "strips", "measure": "batches",
             "describe": "batches", "cluster": "steps"}

    def __init__(self, stream=None, width: int = 28, prefix: str = "") -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width, self.prefix = width, prefix
        self.stage: str | None = None
        self.start = time.perf_counter()
        self.shown = -1

    def line(self, stage: str, done: int, total: int) -> str:
        """The bar's text."""
        frac = done / total if total else 1.0
        full = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        left = elapsed / done * (total - done) if done else float("nan")
        eta = f"{_duration(left)} left" if done and done < total else (
            f"done in {_duration(elapsed)}" if done >= total else "")
        unit = self.UNITS.get(stage, "")
        return (f"{self.prefix}{stage:<9} [{'#' * full}{'.' * (self.width - full)}] "
                f"{done}/{total} {unit} {eta}".rstrip())

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            if self.tty and self.stage is not None:
                self.stream.write("\n")
            self.stage, self.start, self.shown = stage, time.perf_counter(), -1
        text = self.line(stage, done, total)
        if self.tty:
            self.stream.write("\r" + text)
            if done >= total:
                self.stream.write("\n")
                self.stage = None
            self.stream.flush()
            return
        tenth = int(10 * done / total) if total else 10
        if tenth != self.shown or done >= total:
            self.shown = tenth
            self.stream.write(text + "\n")
            self.stream.flush()
