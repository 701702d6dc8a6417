"""What a run prints: the one-line messages, the summary of a run (counts, stage times,
timescales, notes) and the stage a run is in."""

from __future__ import annotations

from .parser import _in_flags


def _say(text: str) -> None:
    print(text, flush=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _counts(series) -> str:
    return ", ".join(f"{k} {v}" for k, v in series.value_counts().items())


def _say_summary(table, result, elapsed: float, flags, where: str = "") -> None:
    """The lines after a run that found crystals: counts, stage times, timescales, notes."""
    _say(f"{len(table)} crystals found in {elapsed:.1f} s "
         f"({', '.join(f'{k} {v:.1f} s' for k, v in result.timings.items())}){where}")
    if "phase" in table:
        _say("phases: " + _counts(table["phase"]))
    if "zoning_type" in table:
        _say("zoning: " + _counts(table["zoning_type"]))
    if "cluster" in table:
        _say(f"clusters: {table['cluster'].nunique()}")
    _print_timescales(table)
    for note in result.notes:
        if note.startswith("diffusion skipped"):
            note = ("diffusion skipped: give --diffusivity-um2-s, or --mineral with its "
                    "conditions (--temperature-c, --pressure-mpa, --delta-qfm), to date "
                    "the crystals")
        _say(f"note: {_in_flags(note, flags)}")


def _print_timescales(table) -> None:
    """The timescales, one line per dated crystal (up to 30), and why the others are not."""
    import numpy as np
    import pandas as pd

    from ..report import interval_columns

    if "timescale_days" not in table:
        return
    days = pd.to_numeric(table["timescale_days"], errors="coerce")
    ok = np.isfinite(days) & (days > 0)
    n_ok = int(ok.sum())
    head = f"timescales: {n_ok} of {len(table)} crystals dated"
    if n_ok:
        head += (f"; median {days[ok].median():.3g} days (range {days[ok].min():.3g}-"
                 f"{days[ok].max():.3g})")
    _say(head)
    rows = table[ok]
    if n_ok <= 30:
        for _, row in rows.iterrows():
            line = f"  crystal {int(row['label'])}: {row['timescale_days']:.3g} days"
            lo, hi = (row.get(c) if c else None for c in interval_columns(table))
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                line += f" (interval {lo:.3g}-{hi:.3g})"
            _say(line)
    if "fit_status" in table and n_ok < len(table):
        _say("  not dated: " + _counts(table.loc[~ok, "fit_status"].fillna("not fitted")))


class _Progress:
    """Prints ``[i/n] stage`` lines and remembers the stage an error happens in."""

    def __init__(self):
        self.stage = "checking the inputs"

    def __call__(self, stage: str, i: int, n: int) -> None:
        self.stage = stage
        _say(f"[{i + 1}/{n}] {stage}" + ("" if stage.endswith("skipped") else " ..."))


