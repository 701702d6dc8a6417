"""Helpers of a run: warnings shown once, the output folder written atomically, the
confirmation of an LLM's cost, and the options of the pipeline read from the flags."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from .._validation import ZonationInputError
from .parser import PROG, _diffusion_options
from .summary import _say

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


def _pixel_size(given: float | None, found: float | None, name: str, source: str) -> float:
    """The pixel size the user passed, else the one the file's metadata carries (said), else
    a message saying how to pass it."""
    if given is not None:
        return given
    if found is None:
        raise ZonationInputError(
            f"{name} carries no pixel size in its metadata; pass --pixel-size-um "
            "(micrometres per pixel, from the SEM's scale bar or data bar)."
        )
    _say(f"pixel size {found:.4g} µm/px from {source}")
    return found


def _has_flag(parser_args, name: str) -> bool:
    return hasattr(parser_args, name)


def _confirm_cost(est: dict, budget_usd: float, yes: bool) -> bool:
    """Show what an LLM run will send and cost; ask when it is over the budget."""
    from ..llm import cost_summary

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
        from ..descriptors import describe_zoning

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


