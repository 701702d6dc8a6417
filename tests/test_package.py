"""Packaging promises: a pure core, one manifest, the public API."""

import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

import napari_zonation as nz

ROOT = Path(__file__).resolve().parents[1]


def test_import_loads_no_qt_napari_or_openai():
    code = (
        "import sys, napari_zonation\n"
        "bad = {m.split('.')[0] for m in sys.modules} & "
        "{'PyQt5','PyQt6','PySide2','PySide6','qtpy','napari','vispy','openai','magicgui'}\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_public_api_names():
    for name in ("segment_crystals", "rim_profiles", "describe_zoning", "cluster_crystals",
                 "fit_diffusion", "line_profiles", "read_profiles", "make_thin_section"):
        assert callable(getattr(nz, name)), name


def test_whole_runs_scribbles_and_label_edits_are_public_and_the_same_objects():
    from napari_zonation import edit, metrics, pipeline, scribble

    assert nz.run_pipeline is pipeline.run_pipeline
    assert nz.train_scribbles is scribble.train_scribbles
    assert (nz.merge_labels, nz.split_label, nz.delete_labels) == (
        edit.merge_labels, edit.split_label, edit.delete_labels)
    assert nz.match_instances is metrics.match_instances
    assert set(nz.__all__) <= set(dir(nz)) and len(set(nz.__all__)) == len(nz.__all__)


def test_one_manifest_reached_through_the_entry_point():
    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-zonation"]
    assert eps, "napari.manifest entry point missing: reinstall the package"
    packaged = files("napari_zonation") / "napari.yaml"
    assert packaged.is_file()
    assert (ROOT / "napari.yaml").read_text() == packaged.read_text()


def test_manifest_is_valid_and_names_the_five_widgets():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(ROOT / "napari.yaml")
    names = {w.display_name for w in pm.contributions.widgets}
    assert names == {"Segment crystals", "Profiles", "Describe zoning", "Cluster",
                     "Diffusion timescales"}
    samples = {s.display_name for s in pm.contributions.sample_data}
    assert "Synthetic zoned crystals (BSE)" in samples
    # every command points at an importable callable
    import importlib

    for cmd in pm.contributions.commands:
        module, attr = cmd.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name
