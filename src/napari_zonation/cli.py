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


def _print_timescales(table) -> None:
    """One line per dated crystal and a summary of the others."""
    if table is None or "timescale_days" not in table:
        return
    ok = table[table["timescale_days"].notna()] if "timescale_days" in table else table[:0]
    if len(ok):
        print(f"timescales ({len(ok)} crystals, days, median [5-95 %]):")
        for _, r in ok.iterrows():
            print(f"  crystal {r['label']}: {r['timescale_days']:.3g} "
                  f"[{r.get('timescale_days_lo', float('nan')):.3g}-"
                  f"{r.get('timescale_days_hi', float('nan')):.3g}]")
    if "fit_status" in table:
        bad = table[table["fit_status"].fillna("").astype(str).ne("ok")
                    & table["fit_status"].notna()]
        if len(bad):
            counts = bad["fit_status"].value_counts()
            print("not dated: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _run(image, px, out: Path, args, title: str) -> int:
    from .io import write_results
    from .pipeline import run_pipeline
    from .report import report_figure

    t0 = time.perf_counter()

    def progress(stage, i, n):
        print(f"[{i + 1}/{n}] {stage} ...", flush=True)

    describe_options = {}
    if args.backend == "openai":
        describe_options = {"model": args.model}
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
    _print_timescales(table if "timescale_days" in table else None)
    for note in result.notes:
        print(f"note: {note}")
    for key, path in {**written, "report": report}.items():
        print(f"wrote {key}: {path}")
    return 0


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
    p.add_argument("--criterion", dest="criteria", action="append",
                   help="plain-text criterion checked on every crystal (repeatable)")
    p.add_argument("--reference", type=int, default=None, help="one-shot reference crystal")
    p.add_argument("--n-clusters", type=int, default=None, help="default: automatic")
    p.add_argument("--cluster-method", default="kmeans",
                   choices=["kmeans", "gmm", "agglomerative", "hdbscan"])
    g = p.add_argument_group("diffusion timescales")
    g.add_argument("--diffusivity-um2-s", type=float, default=None,
                   help="a plain D along the traverse (um^2/s), any mineral")
    g.add_argument("--diffusivity-um2-s-err", type=float, default=None,
                   help="1-sigma of --diffusivity-um2-s (um^2/s)")
    g.add_argument("--mineral", default=None, help="olivine (with the conditions below)")
    g.add_argument("--d-law", default=None,
                   help="olivine Fe-Mg law: dc07 (Dohmen & Chakraborty 2007, default) or dfens "
                        "(Mutch et al. 2021)")
    g.add_argument("--diffusion-model", default=None,
                   choices=["step", "multi_step", "two_stage", "erf"],
                   help="diffusion model (default step: finite differences, one step)")
    g.add_argument("--temperature-c", type=float, default=None, help="temperature (C)")
    g.add_argument("--temperature-c-err", type=float, default=None, help="1-sigma (C)")
    g.add_argument("--pressure-mpa", type=float, default=None, help="pressure (MPa)")
    g.add_argument("--pressure-mpa-err", type=float, default=None, help="1-sigma (MPa)")
    g.add_argument("--delta-qfm", type=float, default=None,
                   help="oxygen fugacity, log units relative to QFM")
    g.add_argument("--delta-qfm-err", type=float, default=None, help="1-sigma (log units)")
    g.add_argument("--log-fo2-pa", type=float, default=None,
                   help="oxygen fugacity as log10 fO2 in Pa (instead of --delta-qfm)")
    g.add_argument("--log-fo2-pa-err", type=float, default=None, help="1-sigma (log units)")
    g.add_argument("--xfe", type=float, default=None,
                   help="fayalite fraction for D when the profiles are grey levels (0.15 = Fo85)")
    g.add_argument("--angles-deg", type=float, nargs=3, default=None,
                   metavar=("A100", "A010", "A001"),
                   help="angles between the traverse and olivine's [100], [010], [001]")
    g.add_argument("--euler-deg", type=float, nargs=3, default=None,
                   metavar=("PHI1", "PHI", "PHI2"),
                   help="EBSD Bunge Euler angles of the crystal (with --azimuth-deg)")
    g.add_argument("--azimuth-deg", type=float, default=None,
                   help="the traverse's direction in the EBSD map, degrees from X toward Y")
    g.add_argument("--ea-kj-mol-err", type=float, default=None,
                   help="1-sigma of the D&C 2007 activation energy (default 20 kJ/mol)")
    g.add_argument("--blur-fwhm-um", type=float, default=None,
                   help="the measurement's resolution (FWHM, um); default one pixel")


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
