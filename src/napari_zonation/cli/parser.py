"""The command's parser: subcommands, flags and their checks, the diffusion conditions'
flags translated to :func:`~napari_zonation.fit_diffusion`'s keywords, and keyword names
shown as the flags that set them."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

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
                   help="shells: clipped mean grey of each distance-to-rim shell (default); "
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


