"""The ``napari-zonation`` command: the whole pipeline, headless.

    napari-zonation run IMAGE --pixel-size-um X --out DIR
    napari-zonation demo --out DIR
    napari-zonation run section.zarr --out DIR          # a mosaic, out of core
    napari-zonation run FOLDER_OR_IMAGES... --out DIR   # a batch of sections

Mosaics and batches: :mod:`napari_zonation.cli.sections` (see docs/whole_sections.md).

Both write ``labels.tif``, ``profiles.csv``, ``crystals.csv`` and ``report.png`` to DIR (the
demo also ``truth.csv``), all at the end of a run that found crystals: a failed run writes
nothing. Everything a run needs (output folder, image, pixel size, options, diffusion
conditions, LLM server) is checked before the first stage. Exit status: 0 done, 1 the run
failed or found no crystal (``--allow-empty``: 0), 2 bad usage or input, 130 interrupted; the
reason is one line on stderr (``--debug`` adds the traceback).

The package's modules: :mod:`~napari_zonation.cli.parser` (subcommands and flags),
:mod:`~napari_zonation.cli.command` (the entry point :func:`main`),
:mod:`~napari_zonation.cli.run` (one image in memory), :mod:`~napari_zonation.cli.sections`
(mosaics and batches), :mod:`~napari_zonation.cli.summary` (what a run prints) and
``_helpers`` (output folder, warnings, options from the flags).
"""

from ._helpers import _confirm_cost, _warnings_once  # noqa: F401 - tested directly
from .command import main
from .parser import (
    DEMO_SIZE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    _diffusion_options,  # noqa: F401 - tested directly
    build_parser,
)
from .sections import REPORT_SIDE, run_batch, run_mosaic

__all__ = [
    "DEMO_SIZE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "REPORT_SIDE",
    "build_parser",
    "main",
    "run_batch",
    "run_mosaic",
]
