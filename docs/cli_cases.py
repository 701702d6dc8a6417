"""Run every bad-input and edge case of the command line and print the table of docs/cli.md.

    python docs/cli_cases.py > /tmp/cases.md

Each case runs ``napari-zonation`` in a new process on files made here (a small synthetic
section saved as PNG/TIFF, and broken or odd variants of it) and reports the first line the
user sees on stderr (or the line that matters on stdout) and the exit status. The tests in
``tests/test_cli.py`` check the same cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from napari_zonation import make_thin_section


def _inputs(d: Path) -> None:
    s = make_thin_section((256, 256), n_crystals=5, seed=1)
    grey = np.clip(s.image, 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(d / "bse.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(d / "grey-as-rgb.png")
    Image.fromarray(np.stack([grey, 255 - grey, grey // 3], -1)).save(d / "colour.png")
    Image.fromarray(np.full((256, 256), 120, np.uint8)).save(d / "constant.png")
    noise = np.random.default_rng(0).normal(120, 6, (256, 256))
    Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(d / "noise.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    tifffile.imwrite(d / "maps.tif", np.stack([grey, 255 - grey, grey // 2]),
                     photometric="minisblack")
    tifffile.imwrite(d / "zstack.tif", np.stack([grey] * 5), ome=True,
                     metadata={"axes": "ZYX"})
    with tifffile.TiffWriter(d / "two-shapes.tif") as tif:
        tif.write(grey)
        tif.write(grey[:200, :200])
    (d / "a-file").write_text("x")


def _cases(d: Path) -> list[tuple[str, list[str], dict]]:
    out = str(d / "out")
    px = ["--pixel-size-um", "1"]
    no_llm = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None}
    return [
        ("output folder cannot be created", ["run", "bse.png", *px, "--out", "/proc/x"], {}),
        ("output folder is a file", ["run", "bse.png", *px, "--out", "a-file"], {}),
        ("missing PNG", ["run", "nope.png", *px, "--out", out], {}),
        ("missing TIFF", ["run", "nope.tif", *px, "--out", out], {}),
        ("corrupt PNG", ["run", "corrupt.png", *px, "--out", out], {}),
        ("TIFF without pixel size, none given", ["run", "maps.tif", "--out", out], {}),
        ("pixel size 1e-6 µm/px", ["run", "bse.png", "--pixel-size-um", "1e-6", "--out", out],
         {}),
        ("pixel size 1e6 µm/px", ["run", "bse.png", "--pixel-size-um", "1e6", "--out", out],
         {}),
        ("pixel size 0.01 µm/px (image smaller than one crystal)",
         ["run", "bse.png", "--pixel-size-um", "0.01", "--out", out], {}),
        ("negative pixel size", ["run", "bse.png", "--pixel-size-um", "-1", "--out", out], {}),
        ("demo --size 0", ["demo", "--size", "0", "--out", out], {}),
        ("demo --size -5", ["demo", "--size", "-5", "--out", out], {}),
        ("demo --n-crystals 0", ["demo", "--n-crystals", "0", "--out", out], {}),
        ("--model without --backend openai", ["demo", "--model", "x", "--out", out], {}),
        ("element maps (3-page TIFF)", ["run", "maps.tif", *px, "--out", out], {}),
        ("z-stack TIFF", ["run", "zstack.tif", *px, "--out", out], {}),
        ("TIFF with pages of two shapes", ["run", "two-shapes.tif", *px, "--out", out], {}),
        ("grey image saved as RGB", ["run", "grey-as-rgb.png", *px, "--out", out], {}),
        ("colour (RGB) image", ["run", "colour.png", *px, "--out", out], {}),
        ("constant image", ["run", "constant.png", *px, "--out", out], {}),
        ("no crystal found", ["run", "noise.png", *px, "--out", out], {}),
        ("no crystal found, --allow-empty",
         ["run", "noise.png", *px, "--out", out, "--allow-empty"], {}),
        ("olivine without xfe",
         ["demo", "--out", out, "--mineral", "olivine", "--temperature-c", "1150",
          "--pressure-mpa", "100", "--delta-qfm", "0"], {}),
        ("demo --backend openai, no key, no server",
         ["demo", "--out", out, "--backend", "openai"], no_llm),
        ("run --backend openai, server not answering",
         ["run", "bse.png", *px, "--out", out, "--backend", "openai"],
         {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}),
    ]


def _shown(stdout: str, stderr: str) -> str:
    err = [ln for ln in stderr.splitlines() if ln.startswith("napari-zonation")]
    if err:
        return err[0]
    for ln in stdout.splitlines():
        if ln.startswith(("note:", "0 crystals")):
            return ln
    lines = [ln for ln in stdout.splitlines() if "crystals found" in ln]
    return lines[0] if lines else (stdout.splitlines() or [""])[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _inputs(d)
        print("| case | exit | what it prints |")
        print("|---|---|---|")
        for name, args, env in _cases(d):
            full = {**os.environ}
            for k, v in env.items():
                if v is None:
                    full.pop(k, None)
                else:
                    full[k] = v
            done = subprocess.run([sys.executable, "-m", "napari_zonation.cli", *args],
                                  cwd=d, env=full, capture_output=True, text=True)
            shown = _shown(done.stdout, done.stderr).replace(str(d), "DIR").replace("|", "\\|")
            print(f"| {name} | {done.returncode} | `{shown}` |", flush=True)
            for p in (d / "out").glob("*") if (d / "out").exists() else []:
                p.unlink()


if __name__ == "__main__":
    main()
