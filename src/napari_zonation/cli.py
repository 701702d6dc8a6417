"""The ``napari-zonation`` command: the whole pipeline, headless.

    napari-zonation run IMAGE --pixel-size-um X --out DIR
    napari-zonation demo --out DIR

Both write ``labels.tif``, ``profiles.csv``, ``crystals.csv`` and ``report.png`` to DIR.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ._validation import ZonationInputError


def _load_image(path: Path, pixel_size_um: float | None):
    from .io import read_sem_tiff

    if path.suffix.lower() in (".tif", ".tiff"):
        image, px, info = read_sem_tiff(path)
        if pixel_size_um is None and px is not None:
            print(f"pixel size {px:.4g} um from {info['pixel_size_source']}")
    else:
        from skimage.io import imread

        image, px = imread(path), None
    px = pixel_size_um if pixel_size_um is not None else px
    if px is None:
        raise ZonationInputError(
            f"{path.name} carries no pixel size in its metadata; pass --pixel-size-um "
            "(micrometres per pixel, from the SEM's scale bar or data bar)."
        )
    return image, px


def _diffusion_options(args) -> dict:
    opts = {}
    if args.diffusivity_um2_s is not None:
        opts["diffusivity_um2_s"] = args.diffusivity_um2_s
    if args.mineral:
        opts.update(mineral=args.mineral, temperature_c=args.temperature_c,
                    pressure_mpa=args.pressure_mpa, delta_qfm=args.delta_qfm)
        if args.temperature_c_err is not None:
            opts["temperature_c_err"] = args.temperature_c_err
    return opts


def _run(image, px, out: Path, args, title: str) -> int:
    from .io import write_results
    from .pipeline import run_pipeline
    from .report import report_figure

    t0 = time.perf_counter()

    def progress(stage, i, n):
        print(f"[{i + 1}/{n}] {stage} ...", flush=True)

    describe_options = {}
    if args.backend == "openai":
        describe_options = {
            "model": args.model,
            "send_images": not args.text_only,
            "confirm": lambda est: _confirm_cost(est, args.budget_usd, args.yes),
            "budget_usd": args.budget_usd or None,
        }
        if args.base_url:
            describe_options["base_url"] = args.base_url
        if args.criteria:
            describe_options["criteria"] = list(args.criteria)
        if args.reference is not None:
            describe_options["reference"] = args.reference
    result = run_pipeline(
        image,
        px,
        profile_method=args.profile_method,
        profile_options={"contacts": args.contacts},
        backend=args.backend,
        describe_options=describe_options,
        n_clusters=args.n_clusters,
        cluster_method=args.cluster_method,
        diffusion_options=_diffusion_options(args),
        segment_options={"min_area_um2": args.min_area_um2} if args.min_area_um2 else None,
        progress=progress,
    )
    written = write_results(out, labels=result.labels, profiles=result.profiles,
                            crystals=result.crystals, pixel_size_um=px)
    report = report_figure(np.asarray(image), result.labels, result.crystals, result.profiles,
                           out / "report.png", pixel_size_um=px, title=title)
    elapsed = time.perf_counter() - t0
    table = result.crystals
    print(f"{len(table)} crystals found in {elapsed:.1f} s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in result.timings.items())})")
    if len(table):
        if "phase" in table:
            print("phases: " + ", ".join(f"{k} {v}" for k, v in
                                          table["phase"].value_counts().items()))
        if "zoning_type" in table:
            print("zoning: " + ", ".join(f"{k} {v}" for k, v in
                                          table["zoning_type"].value_counts().items()))
        if "cluster" in table:
            print(f"clusters: {table['cluster'].nunique()}")
    for note in result.notes:
        print(f"note: {note}")
    for key, path in {**written, "report": report}.items():
        print(f"wrote {key}: {path}")
    return 0


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
        print(f"napari-zonation: {question[:-14]}; pass --yes or a larger --budget-usd.",
              file=sys.stderr)
        return False
    return input(question).strip().lower() in ("y", "yes")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--profile-method", default="shells", choices=["shells", "traverse"])
    p.add_argument("--contacts", default="exclude", choices=["exclude", "rim"],
                   help="shells: leave out pixels nearer a grain contact than a free face "
                   "(exclude), or count every face as a rim (rim)")
    p.add_argument("--min-area-um2", type=float, default=None,
                   help="smallest phenocryst area in um^2")
    p.add_argument("--backend", default="offline", choices=["offline", "openai"],
                   help="zoning description; 'openai' sends crystal crops, profile plots and "
                        "numbers to OPENAI_BASE_URL (your opt-in)")
    p.add_argument("--model", default="gpt-4o-mini", help="model for --backend openai")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server (default: OPENAI_BASE_URL, else OpenAI's); "
                        "a server on localhost needs no key")
    p.add_argument("--text-only", action="store_true",
                   help="send numbers only (no plots or crops) to the LLM")
    p.add_argument("--budget-usd", type=float, default=1.0,
                   help="ask before an LLM run estimated above this, and stop sending once "
                        "the answers cost this much (0: no budget)")
    p.add_argument("--yes", action="store_true",
                   help="do not ask about the budget (for scripts)")
    p.add_argument("--criterion", dest="criteria", action="append",
                   help="plain-text criterion checked on every crystal (repeatable)")
    p.add_argument("--reference", type=int, default=None, help="one-shot reference crystal")
    p.add_argument("--n-clusters", type=int, default=None, help="default: automatic")
    p.add_argument("--cluster-method", default="kmeans",
                   choices=["kmeans", "gmm", "agglomerative", "hdbscan"])
    p.add_argument("--diffusivity-um2-s", type=float, default=None)
    p.add_argument("--mineral", default=None, help="e.g. olivine (with the conditions below)")
    p.add_argument("--temperature-c", type=float, default=None)
    p.add_argument("--temperature-c-err", type=float, default=None)
    p.add_argument("--pressure-mpa", type=float, default=None)
    p.add_argument("--delta-qfm", type=float, default=None)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-zonation`` command."""
    parser = argparse.ArgumentParser(
        prog="napari-zonation",
        description="Segment BSE images into crystals, extract core-to-rim profiles, describe "
                    "and cluster zoning, fit diffusion timescales.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline on an image")
    run.add_argument("image", type=Path, help="BSE image (SEM TIFF, PNG, ...)")
    run.add_argument("--pixel-size-um", type=float, default=None,
                     help="micrometres per pixel (default: from the TIFF's metadata)")
    _add_common(run)
    demo = sub.add_parser("demo", help="run the pipeline on the built-in synthetic sample")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--size", type=int, default=768, help="image side in pixels")
    demo.add_argument("--n-crystals", type=int, default=20)
    _add_common(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-zonation`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .synthetic import make_thin_section

            if args.backend != "offline":
                print("demo: using the offline backend (no network, no API key)")
                args.backend = "offline"
            s = make_thin_section((args.size, args.size), n_crystals=args.n_crystals,
                                  seed=args.seed)
            print(f"synthetic thin section {args.size}x{args.size} px, "
                  f"{len(s.truth)} true crystals, seed {args.seed}")
            args.out.mkdir(parents=True, exist_ok=True)
            s.truth.to_csv(args.out / "truth.csv", index=False)
            return _run(s.image, s.pixel_size_um, args.out, args,
                        f"synthetic sample (seed {args.seed})")
        image, px = _load_image(args.image, args.pixel_size_um)
        return _run(image, px, args.out, args, args.image.name)
    except ZonationInputError as exc:
        print(f"napari-zonation: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .llm import LLMCancelled

        if isinstance(exc, LLMCancelled):
            print(f"napari-zonation: stopped: {exc or 'cancelled'}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
