"""The ``napari-zonation`` command's entry point: parse, dispatch, and turn errors into one
line and an exit status."""

from __future__ import annotations

import sys

from .._validation import ZonationInputError
from ._helpers import _warnings_once
from .parser import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    _in_flags,
    _keyword_flags,
    build_parser,
)
from .run import _is_store, _run_in_memory
from .sections import run_batch, run_mosaic
from .summary import _one_line, _Progress


def _run(args, progress: _Progress, flags) -> int:
    if args.command == "run":
        from ..batch import find_sections
        from ..mosaic import is_mosaic

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
            from ..llm import LLMCancelled

            if isinstance(exc, LLMCancelled) and not args.debug:
                print(f"{PROG}: stopped: {_one_line(exc) or 'cancelled'}", file=sys.stderr)
                return EXIT_FAILED
            if args.debug:
                raise
            print(f"{PROG}: error: the run failed in {progress.stage}: "
                  f"{type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)",
                  file=sys.stderr)
            return EXIT_FAILED


