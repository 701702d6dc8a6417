"""The ``napari-zonation`` command: the whole pipeline, headless.

    napari-zonation run IMAGE --pixel-size-um X --out DIR
    napari-zonation demo --out DIR
    napari-zonation run section.zarr --out DIR          # a mosaic, out of core
    napari-zonation run FOLDER_OR_IMAGES... --out DIR   # a batch of sections

Mosaics and batches: the end of this module (see docs/whole_sections.md).

Both write ``labels.tif``, ``profiles.csv``, ``crystals.csv`` and ``report.png`` to DIR (the
demo also ``truth.csv``), all at the end of a run that found crystals: a failed run writes
nothing. Everything a run needs (output folder, image, pixel size, options, diffusion
conditions, LLM server) is checked before the first stage. Exit status: 0 done, 1 the run
failed or found no crystal (``--allow-empty``: 0), 2 bad usage or input, 130 interrupted; the
reason is one line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ._validation import ZonationInputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "napari-zonation"
#: demo image side in pixels: below 128 the synthetic crystals (90-260 µm at 1 µm/px) no
#: longer fit
DEMO_SIZE = (128, 16384)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind=float, *, low=None, high=None, low_open=False, what="a number"):
    """An argparse type: a finite number within [low, high] (``low_open``: above low)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"{text} must be {'above' if low_open else 'at least'} {low:g}"
            )
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be at most {high:g}")
        return value

    return parse


_positive = _number(float, low=0, low_open=True, what="a positive number")
_non_negative = _number(float, low=0, what="a non-negative number")
_finite = _number(float)


# --------------------------------------------------------------------------------------------
# diffusion conditions (flags and their translation to fit_diffusion's keywords)


def _add_diffusion(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("diffusion timescales (optional; without them nothing is dated)")
    g.add_argument("--diffusivity-um2-s", type=_positive, default=None,
                   help="diffusivity along the profiles in µm²/s, for any mineral: each "
                        "profile's fitted sqrt(Dt) gives t = (sqrt(Dt))² / D")
    g.add_argument("--diffusivity-um2-s-err", type=_non_negative, default=None,
                   help="1-sigma uncertainty of --diffusivity-um2-s in µm²/s")
    g.add_argument("--mineral", default=None,
                   help="mineral whose diffusivity is computed from the conditions below "
                        "(olivine: Fe-Mg, law chosen with --d-law)")
    g.add_argument("--d-law", default=None,
                   help="olivine Fe-Mg diffusivity law: dc07 (Dohmen & Chakraborty 2007, the "
                        "default) or dfens (the DFENS regression, Mutch et al. 2021)")
    g.add_argument("--diffusion-model", default=None,
                   choices=["step", "multi_step", "two_stage", "erf"],
                   help="diffusion model: step (default; finite differences, one step), "
                        "multi_step, two_stage, or erf (the analytical quick look)")
    g.add_argument("--temperature-c", type=_finite, default=None,
                   help="temperature in °C (with --mineral)")
    g.add_argument("--temperature-c-err", type=_non_negative, default=None,
                   help="1-sigma uncertainty of the temperature in °C (widens the interval)")
    g.add_argument("--pressure-mpa", type=_non_negative, default=None,
                   help="pressure in MPa (with --mineral)")
    g.add_argument("--pressure-mpa-err", type=_non_negative, default=None,
                   help="1-sigma uncertainty of the pressure in MPa")
    g.add_argument("--delta-qfm", type=_finite, default=None,
                   help="oxygen fugacity in log units relative to the QFM buffer (with "
                        "--mineral)")
    g.add_argument("--delta-qfm-err", type=_non_negative, default=None,
                   help="1-sigma uncertainty of --delta-qfm in log units")
    g.add_argument("--log-fo2-pa", type=_finite, default=None,
                   help="oxygen fugacity as log10 fO2 in Pa (instead of --delta-qfm)")
    g.add_argument("--log-fo2-pa-err", type=_non_negative, default=None,
                   help="1-sigma uncertainty of --log-fo2-pa in log units")
    g.add_argument("--xfe", type=_number(float, low=0, high=1, what="a fraction"),
                   default=None,
                   help="fayalite fraction of the crystals for olivine D (0.15 for Fo85): the "
                        "rim profiles of a BSE image are grey levels, not Fo")
    g.add_argument("--angles-deg", type=_finite, nargs=3, default=None,
                   metavar=("A100", "A010", "A001"),
                   help="angles in degrees between the traverses and olivine's [100], [010], "
                        "[001] (default: D along [001], timescales then minima)")
    g.add_argument("--euler-deg", type=_finite, nargs=3, default=None,
                   metavar=("PHI1", "PHI", "PHI2"),
                   help="EBSD Bunge Euler angles of the crystal in degrees (with "
                        "--azimuth-deg), instead of --angles-deg")
    g.add_argument("--azimuth-deg", type=_finite, default=None,
                   help="the traverses' direction in the EBSD map, degrees from X toward Y")
    g.add_argument("--ea-kj-mol-err", type=_non_negative, default=None,
                   help="1-sigma of the Dohmen & Chakraborty 2007 activation energy in kJ/mol "
                        "(default 20)")
    g.add_argument("--blur-fwhm-um", type=_non_negative, default=None,
                   help="the measurement's resolution (FWHM, µm) convolved into the model "
                        "(default: a one-pixel probe)")
    g.add_argument("--date-border-crystals", action="store_true",
                   help="also date the crystals cut by the image edge (by default they are "
                        "left out: their profile there runs to the image edge, not to a face)")


def _diffusion_options(args) -> dict:
    """fit_diffusion's keywords from the diffusion flags (only those given)."""
    opts = {}
    pairs = {
        "diffusivity_um2_s": args.diffusivity_um2_s,
        "diffusivity_um2_s_err": args.diffusivity_um2_s_err,
        "temperature_c": args.temperature_c,
        "temperature_c_err": args.temperature_c_err,
        "pressure_mpa": args.pressure_mpa,
        "pressure_mpa_err": args.pressure_mpa_err,
        "delta_qfm": args.delta_qfm,
        "delta_qfm_err": args.delta_qfm_err,
        "log_fo2_pa": args.log_fo2_pa,
        "log_fo2_pa_err": args.log_fo2_pa_err,
        "xfe": args.xfe,
        "ea_kj_mol_err": args.ea_kj_mol_err,
        "blur_fwhm_um": args.blur_fwhm_um,
    }
    if args.mineral or args.d_law:
        if args.mineral:
            opts["mineral"] = args.mineral
        if args.d_law:
            opts["d_law"] = args.d_law
    elif args.diffusivity_um2_s is None:
        return {}
    opts.update({k: v for k, v in pairs.items() if v is not None})
    if args.angles_deg is not None:
        opts["angles_deg"] = tuple(args.angles_deg)
    if args.euler_deg is not None:
        opts["euler_deg"] = tuple(args.euler_deg)
    if args.azimuth_deg is not None:
        opts["azimuth_deg"] = args.azimuth_deg
    if args.diffusion_model:
        opts["model"] = args.diffusion_model
    return opts


# --------------------------------------------------------------------------------------------
# the parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (created when missing; checked before the run)")
    p.add_argument("--min-area-um2", type=_non_negative, default=None,
                   help="smallest crystal area kept, in µm² (default: segment_crystals' own)")
    p.add_argument("--contrast", type=_number(float, low=0, low_open=True, high=1,
                                              what="a fraction of the grey range"),
                   default=None,
                   help="smallest grey difference from the groundmass that counts as crystal, "
                        "as a fraction of the grey range (default: set from the image's noise)")
    p.add_argument("--profile-method", default="shells", choices=["shells", "traverse"],
                   help="shells: median grey of each distance-to-rim shell (default); "
                        "traverse: one placed line from the rim to the core")
    p.add_argument("--contacts", default="exclude", choices=["exclude", "rim"],
                   help="shells: leave out pixels nearer a grain contact than a free face "
                        "(exclude), or count every face as a rim (rim)")
    g = p.add_argument_group("zoning description and clustering")
    g.add_argument("--backend", default="offline", choices=["offline", "openai"],
                   help="zoning description; 'openai' sends crystal crops, profile plots and "
                        "numbers to the server of --base-url / OPENAI_BASE_URL (your opt-in; "
                        "a key from OPENAI_API_KEY unless the server is local)")
    g.add_argument("--model", default=None,
                   help="model name for --backend openai (default: the LLM module's)")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server for --backend openai, e.g. "
                        "http://127.0.0.1:8080/v1 (default: OPENAI_BASE_URL, else OpenAI's)")
    g.add_argument("--text-only", action="store_true",
                   help="--backend openai: send numbers only (no profile plots or crops)")
    g.add_argument("--budget-usd", type=_non_negative, default=1.0,
                   help="--backend openai: ask before a run estimated above this many US "
                        "dollars, and stop sending once the answers cost this much (0: none)")
    g.add_argument("--yes", action="store_true",
                   help="--backend openai: do not ask about the budget (for scripts)")
    g.add_argument("--criterion", dest="criteria", action="append",
                   help="plain-text criterion checked on every crystal (repeatable)")
    g.add_argument("--reference", type=_number(int, low=1, what="a crystal label"), default=None,
                   help="label of a one-shot reference crystal the others are compared with")
    g.add_argument("--n-clusters", type=_number(int, low=1, what="a whole number"),
                   default=None, help="number of clusters (default: chosen automatically)")
    g.add_argument("--cluster-method", default="kmeans",
                   choices=["kmeans", "gmm", "agglomerative", "hdbscan"],
                   help="clustering algorithm (scikit-learn)")
    _add_diffusion(p)
    g = p.add_argument_group("run")
    g.add_argument("--allow-empty", action="store_true",
                   help="finding no crystal is a result: write empty tables and a report, "
                        "exit 0 (default: exit 1 and write nothing)")
    g.add_argument("--debug", action="store_true",
                   help="show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-zonation`` command."""
    parser = _Parser(
        prog=PROG,
        description="Segment BSE images into crystals, extract core-to-rim profiles, describe "
                    "and cluster zoning, fit diffusion timescales.",
        epilog="Exit status: 0 done; 1 the run failed or found no crystal; 2 bad usage or "
               "input; 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the pipeline on an image, a mosaic or a batch")
    run.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                     help="BSE image: SEM TIFF (pixel size read from its metadata), PNG, JPEG, "
                          "BMP; element maps as one multi-page TIFF; a whole-section mosaic "
                          "as a .zarr store (OME-Zarr too) or a TIFF of more than 8192 x "
                          "8192 px, read window by window. Several images or a folder: a "
                          "batch, one result folder per section in --out")
    run.add_argument("--pixel-size-um", type=_positive, default=None,
                     help="micrometres per pixel, 0.005-50 (default: from the TIFF's or the "
                          "OME-Zarr's metadata)")
    _add_common(run)
    g = run.add_argument_group("mosaics and batches")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the tiles and batches of crystals on this running "
                        "dask.distributed scheduler (default: this machine's threads)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing labels.zarr, and redo the sections of a batch "
                        "that an earlier run finished (by default they are skipped)")
    g.add_argument("--allow-missing-chunks", action="store_true",
                   help="read the chunks missing from a .zarr store as its fill value "
                        "(by default such a store is refused)")
    g.add_argument("--threads", type=_number(int, low=1, what="a whole number"), default=None,
                   help="threads of this machine (default: up to 4)")
    demo = sub.add_parser("demo", help="run the pipeline on the built-in synthetic sample")
    demo.add_argument("--seed", type=_number(int, low=0, what="a whole number"), default=0,
                      help="seed of the synthetic thin section")
    demo.add_argument("--size", type=_number(int, low=DEMO_SIZE[0], high=DEMO_SIZE[1],
                                             what="a whole number of pixels"),
                      default=768, help=f"image side in pixels ({DEMO_SIZE[0]}-{DEMO_SIZE[1]})")
    demo.add_argument("--n-crystals", type=_number(int, low=1, high=10_000,
                                                   what="a whole number"),
                      default=20, help="crystals the generator places (those that fit)")
    _add_common(demo)
    parser.commands = {"run": run, "demo": demo}
    return parser


def _keyword_flags(parser: argparse.ArgumentParser) -> list[tuple[re.Pattern, str]]:
    """Python keywords in the core's messages and the flags that set them on this command
    (``min_area_um2`` -> ``--min-area-um2``, ``xfe=0.15`` -> ``--xfe 0.15``,
    ``date_border_crystals=True`` -> ``--date-border-crystals``), so that a message names what
    the user can type. Only snake_case names (and ``xfe``) are matched: plain words such as
    "model" or "contrast" are left alone."""
    pairs = []
    for action in parser._actions:  # argparse offers no public iterator
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags:
            continue
        if action.dest == "contrast":
            pairs.append((re.compile(r"segment_crystals' contrast"), flags[0]))
        elif "_" in action.dest or action.dest == "xfe":
            value = "(=True)?" if action.nargs == 0 else r"(=(?=\S))?"
            # not inside a flag already written out (``--xfe``) or a longer name
            pairs.append((re.compile(rf"(?<![\w-]){action.dest}\b{value}"), flags[0]))
    return pairs


def _in_flags(text: str, pairs) -> str:
    """``text`` with the keywords of :func:`_keyword_flags` replaced by their flags."""
    for pattern, flag in pairs:
        text = pattern.sub(lambda m, f=flag: f + (" " if m.group(0).endswith("=") else ""), text)
    return text


# --------------------------------------------------------------------------------------------
# helpers of a run


@contextlib.contextmanager
def _warnings_once():
    """Print each distinct warning once, as one line without its source file and line."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


class _OutFolder:
    """The output folder, checked before the run and removed again if the run created it
    and wrote nothing; results are written to a hidden staging folder inside it and moved
    into place only when all are written."""

    def __init__(self, path: Path):
        self.path = path
        self.created: list[Path] = []

    def check(self) -> None:
        out = self.path
        if out.exists() and not out.is_dir():
            raise ZonationInputError(
                f"--out {out} is a file, not a folder; give a folder (it is created when "
                "missing)."
            )
        self.created = [p for p in (out, *out.parents) if not p.exists()]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.created = [p for p in self.created if p.exists()]
            self.cleanup()
            raise ZonationInputError(
                f"cannot create the output folder {out} ({exc.strerror or exc}); give a folder "
                "you can write to."
            ) from exc
        try:
            fd, probe = tempfile.mkstemp(dir=out, prefix=".napari-zonation-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            self.cleanup()
            raise ZonationInputError(
                f"cannot write to the output folder {out} ({exc.strerror or exc}); give a "
                "folder you can write to."
            ) from exc

    def cleanup(self) -> None:
        """Remove the folders this run created, if they are still empty."""
        for p in self.created:
            with contextlib.suppress(OSError):
                p.rmdir()
        self.created = []

    @contextlib.contextmanager
    def staging(self):
        stage = Path(tempfile.mkdtemp(prefix=".napari-zonation-", dir=self.path))
        try:
            yield stage
            for f in sorted(stage.iterdir()):
                target = self.path / f.name
                if target.is_dir() and not target.is_symlink():  # a store replaced (--overwrite)
                    old = Path(tempfile.mkdtemp(prefix=".napari-zonation-old-", dir=self.path))
                    os.replace(target, old / f.name)
                    os.replace(f, target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(f, target)
            self.created = []
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _has_flag(parser_args, name: str) -> bool:
    return hasattr(parser_args, name)


def _confirm_cost(est: dict, budget_usd: float, yes: bool) -> bool:
    """Show what an LLM run will send and cost; ask when it is over the budget."""
    from .llm import cost_summary

    print(f"LLM: {cost_summary(est)} (cached answers are free)", flush=True)
    if not budget_usd or est["usd"] is None or est["usd"] <= budget_usd or yes:
        return True
    question = (
        f"the estimate ({est['usd']:.4f} USD) is over the budget of {budget_usd:g} USD. "
        "Send anyway? [y/N] "
    )
    if not sys.stdin.isatty():
        print(f"{PROG}: {question[:-14]}; pass --yes or a larger --budget-usd.",
              file=sys.stderr)
        return False
    return input(question).strip().lower() in ("y", "yes")


def _describe_options(args) -> dict:
    opts: dict = {}
    if args.criteria:
        opts["criteria"] = list(args.criteria)
    if args.reference is not None:
        opts["reference"] = args.reference
    if args.backend == "openai":
        if args.model:
            opts["model"] = args.model
        if args.base_url:
            opts["base_url"] = args.base_url
        opts["send_images"] = not args.text_only
        opts["budget_usd"] = args.budget_usd or None
        opts["confirm"] = lambda est: _confirm_cost(est, args.budget_usd, args.yes)
        return opts
    for flag in ("--model", "--base-url"):
        if getattr(args, flag[2:].replace("-", "_")):
            raise ZonationInputError(f"{flag} is for --backend openai; add --backend openai.")
    if opts:
        from .descriptors import describe_zoning

        accepted = set(inspect.signature(describe_zoning).parameters)
        accepted |= set(getattr(sys.modules[describe_zoning.__module__], "_OFFLINE_OPTIONS", ()))
        missing = sorted(set(opts) - accepted)
        if missing:
            flags = ", ".join("--criterion" if m == "criteria" else f"--{m}" for m in missing)
            raise ZonationInputError(
                f"{flags} need --backend openai: the offline description does not take them."
            )
    return opts


def _pipeline_options(args) -> dict:
    diffusion = _diffusion_options(args)
    if diffusion and str(diffusion.get("mineral") or "").lower() == "olivine" and (
        diffusion.get("xfe") is None and diffusion.get("diffusivity_um2_s") is None
    ):
        if _has_flag(args, "xfe"):
            raise ZonationInputError(
                "--mineral olivine needs --xfe, the fayalite fraction of the crystals (e.g. "
                "0.15 for Fo85): the rim profiles of a BSE image are grey levels, not Fo."
            )
        raise ZonationInputError(
            "--mineral olivine needs the crystals' fayalite fraction (xfe), which this "
            "command line does not take: give --diffusivity-um2-s instead, or date the "
            "profiles in Python with fit_diffusion(..., xfe=...)."
        )
    segment = {"min_area_um2": args.min_area_um2, "contrast": args.contrast}
    return {
        "segment_options": {k: v for k, v in segment.items() if v is not None} or None,
        "profile_method": args.profile_method,
        "profile_options": {"contacts": args.contacts},
        "backend": args.backend,
        "describe_options": _describe_options(args),
        "n_clusters": args.n_clusters,
        "cluster_method": args.cluster_method,
        "diffusion_options": diffusion,
        "date_border_crystals": bool(args.date_border_crystals),
    }


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

    from .report import interval_columns

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


# --------------------------------------------------------------------------------------------
# the run


def _load(args, options: dict, progress: _Progress):
    """Check, then read or generate the image: (image, pixel size, title, truth or None)."""
    from .io import image_header, read_image
    from .pipeline import check_pipeline

    if args.command == "demo":
        from .synthetic import make_thin_section

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
    px = args.pixel_size_um
    if px is None:
        px = header.pixel_size_um
        if px is None:
            raise ZonationInputError(
                f"{path.name} carries no pixel size in its metadata; pass "
                "--pixel-size-um (micrometres per pixel, from the SEM's scale bar or data bar)."
            )
        _say(f"pixel size {px:.4g} µm/px from {header.info['pixel_size_source']}")
    check_pipeline(header.shape, px, itemsize=header.dtype.itemsize, **options)
    progress.stage = "reading the image"
    image, _, info = read_image(path)
    for note in info["notes"]:
        _say(f"note: {note}")
    from ._validation import check_image_content

    check_image_content(image, name=path.name)
    return image, px, path.name, None


def _write(out: _OutFolder, image, px, title, truth, result, note=None) -> dict:
    from .io import write_results
    from .report import report_figure

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


def _run(args, progress: _Progress, flags) -> int:
    if args.command == "run":
        from .batch import find_sections
        from .mosaic import is_mosaic

        sections = find_sections(args.images)
        several = len(sections) > 1 or any(
            p.is_dir() and not _is_store(p) for p in args.images
        )
        if several:

            return run_batch(args, sections, progress, flags)
        args.image = sections[0].path
        if is_mosaic(args.image):

            return run_mosaic(args, progress, flags)
    return _run_in_memory(args, progress, flags)


def _is_store(p: Path) -> bool:
    from .mosaic import is_zarr_path

    return is_zarr_path(p)


def _run_in_memory(args, progress: _Progress, flags) -> int:
    from .pipeline import run_pipeline

    options = _pipeline_options(args)
    segment = dict(options["segment_options"] or {})
    if getattr(args, "threads", None):
        segment["threads"] = args.threads
    if getattr(args, "scheduler", None):
        from ._cluster import connect

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-zonation`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = _keyword_flags(parser.commands[args.command])
    progress = _Progress()
    with _warnings_once():
        try:
            return _run(args, progress, flags)
        except ZonationInputError as exc:
            if args.debug:
                raise
            print(f"{PROG}: error: {_in_flags(_one_line(exc), flags)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted while {progress.stage}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MemoryError as exc:
            if args.debug:
                raise
            print(f"{PROG}: error: out of memory in {progress.stage} ({_one_line(exc)}); "
                  "crop or bin the image.", file=sys.stderr)
            return EXIT_FAILED
        except Exception as exc:  # noqa: BLE001 - one line for the user; --debug shows it
            from .llm import LLMCancelled

            if isinstance(exc, LLMCancelled) and not args.debug:
                print(f"{PROG}: stopped: {_one_line(exc) or 'cancelled'}", file=sys.stderr)
                return EXIT_FAILED
            if args.debug:
                raise
            print(f"{PROG}: error: the run failed in {progress.stage}: "
                  f"{type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)",
                  file=sys.stderr)
            return EXIT_FAILED


# --------------------------------------------------------------------------------------------
# whole-section mosaics and batches of sections

#: Longest side (pixels) of the overview the report of a mosaic draws.
REPORT_SIDE = 2048


def _client(args):
    """The dask client of ``--scheduler`` (connected before any work), or None."""
    if not getattr(args, "scheduler", None):
        return None
    from ._cluster import connect

    client = connect(args.scheduler)
    n = sum(client.nthreads().values())
    _say(f"dask scheduler {args.scheduler}: {len(client.nthreads())} worker(s), {n} thread(s)")
    return client


def _write_profiles(path: Path, files: list) -> int:
    import pandas as pd

    from .streaming import iter_profiles

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

    from .mosaic import open_labels
    from .report import report_figure
    from .streaming import SHAPE_COLUMNS, iter_profiles

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

    from .batch import ProgressBar
    from .mosaic import open_mosaic
    from .pipeline import check_pipeline, run_mosaic_pipeline

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
        px = args.pixel_size_um
        if px is None:
            px = mosaic.pixel_size_um
            if px is None:
                raise ZonationInputError(
                    f"{Path(args.image).name} carries no pixel size in its metadata; pass "
                    "--pixel-size-um (micrometres per pixel)."
                )
            _say(f"pixel size {px:.4g} µm/px from {mosaic.info['pixel_size_source']}")
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
                from .io import write_results

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

    from .batch import (
        combine_tables,
        is_done,
        mark_done,
        write_sections_table,
    )
    from .mosaic import is_mosaic

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
