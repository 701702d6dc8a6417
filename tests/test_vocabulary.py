"""The zoning vocabulary, and the quantity travelling with a profiles table.

The expected readings are written out by hand from the petrology (higher Fo, Mg# or An is
more primitive; a brighter olivine or pyroxene is Fe-richer, a brighter plagioclase
An-richer), not taken from the code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import napari_zonation as nz
from napari_zonation import vocabulary as voc
from napari_zonation.descriptors import describe_zoning
from napari_zonation.profiles import apply_calibration, calibrate


@pytest.mark.parametrize(
    ("name", "canonical", "kind"),
    [
        ("Fo", "Fo", "composition"),
        ("fo", "Fo", "composition"),
        ("Fo (mol%)", "Fo", "composition"),
        ("Fo%", "Fo", "composition"),
        ("xfo", "XFo", "composition"),
        ("X_Fo", "XFo", "composition"),
        ("Mg#", "Mg#", "composition"),
        ("mg_number", "Mg#", "composition"),
        ("An", "An", "composition"),
        ("An_mol", "An", "composition"),
        ("An (mol%)", "An", "composition"),
        ("BSE", "grey", "grey"),
        ("gray", "grey", "grey"),
        (None, "grey", "grey"),
        ("feo_t_wt", "FeO", "element"),
        ("MgO (wt%)", "MgO", "element"),
        ("Sr (ppm)", "Sr", "element"),
        ("sio2_wt", "SiO2", "element"),
        ("counts", "counts", "unknown"),
    ],
)
def test_parse_quantity(name, canonical, kind):
    q = voc.parse_quantity(name)
    assert (q.name, q.kind) == (canonical, kind)


def test_phase_names_come_from_the_vocabulary():
    """crystal_table's grey classes, the criteria and the widgets' colours name known phases."""
    from napari_zonation import criteria
    from napari_zonation.segment import DEFAULT_PHASE_NAMES

    assert DEFAULT_PHASE_NAMES == voc.GREY_CLASS_PHASES
    assert set(DEFAULT_PHASE_NAMES.values()) <= set(voc.ALL_PHASES)
    assert set(nz.synthetic.PHASES) <= set(voc.PHASES)
    assert all(voc.normalise_phase(p) == p for p in voc.PHASES)
    names = ["olivine", "plagioclase", "clinopyroxene", "orthopyroxene"]
    table = pd.DataFrame({"label": [1, 2, 3, 4], "phase": names})
    for phase in voc.PHASES:  # each phase name is a criterion the offline rules read
        hit = criteria.apply_criteria(table, phase)[f"criterion_{phase}"].astype(bool)
        assert list(hit) == [n.endswith(phase) for n in names]
    pytest.importorskip("qtpy.QtWidgets")
    from napari_zonation.widgets._colors import PHASE_COLORS

    assert set(PHASE_COLORS) <= set(voc.ALL_PHASES)


def test_phase_aliases():
    for alias, full in [
        ("ol", "olivine"),
        ("Olivine", "olivine"),
        ("cpx", "clinopyroxene"),
        ("augite", "clinopyroxene"),
        ("opx", "orthopyroxene"),
        ("plag", "plagioclase"),
        ("Pl.", "plagioclase"),
        ("plagioclases", "plagioclase"),
    ]:
        assert voc.normalise_phase(alias) == full
    assert voc.normalise_phase("quartz") is None
    assert voc.normalise_phase(None) is None
    assert voc.normalise_phase(float("nan")) is None


# (zoning type, rim - core, phase, quantity) -> reading, written from the petrology
CASES = [
    ("rim_darker", -2.6, "olivine", "Fo", "normal"),  # Ol13A: Fo 89.5 core, 86.9 rim
    ("rim_brighter", 0.4, "olivine", "Fo", "reverse"),  # Mg-richer rim
    ("rim_brighter", 0.004, "olivine", "XFo", "reverse"),
    ("gradient", -3.0, "cpx", "Mg#", "normal"),
    ("rim_darker", -10.0, "plagioclase", "An", "normal"),  # An-poorer rim
    ("rim_brighter", 5.0, "plag", "An", "reverse"),
    ("rim_brighter", 12.0, "olivine", "grey", "normal"),  # brighter = Fe-richer rim
    ("rim_darker", -12.0, "olivine", "grey", "reverse"),
    ("rim_brighter", 12.0, "plagioclase", "grey", "reverse"),  # brighter = An-richer rim
    ("rim_darker", -12.0, "plagioclase", "grey", "normal"),
    ("rim_brighter", 1.0, "olivine", "FeO", "normal"),  # more Fe at the rim
    ("rim_brighter", 50.0, "olivine", "Ni", "reverse"),  # Ni falls with fractionation
    ("multi_step", -1.0, "olivine", "composition", "normal"),
    ("unzoned", 0.0, "olivine", "Sr", "unzoned"),
    ("oscillatory", 3.0, "plagioclase", "An", "oscillatory"),
]


@pytest.mark.parametrize(("zt", "contrast", "phase", "quantity", "expected"), CASES)
def test_interpretation_rule(zt, contrast, phase, quantity, expected):
    reading, note = voc.interpret(zt, contrast, phase, quantity)
    assert reading == expected
    assert note == ""


def test_interpretation_left_empty_with_a_reason():
    reading, note = voc.interpret("rim_brighter", 3.0, "plagioclase", "Sr (ppm)")
    assert reading is None and "Sr" in note and "plagioclase" in note
    reading, note = voc.interpret("rim_brighter", 3.0, "olivine", "counts")
    assert reading is None and "counts" in note
    reading, note = voc.interpret("rim_brighter", 3.0, "plagioclase", "Fo")
    assert reading is None and "Fo" in note
    reading, note = voc.interpret("rim_brighter", 3.0, "quartz", "grey")
    assert reading == "unknown" and "quartz" in note


def test_one_copy_of_the_vocabulary():
    from napari_zonation import descriptors, llm, synthetic

    assert descriptors.ZONING_TYPES is voc.ZONING_TYPES
    assert llm.LLM_ZONING_TYPES is voc.ZONING_TYPES
    assert set(synthetic.ZONING_TYPES) == set(voc.ZONING_TYPES) - {"complex"}
    # the generator's truth uses the vocabulary's rule
    for phase in ("olivine", "clinopyroxene", "plagioclase"):
        for contrast in (-5.0, 5.0):
            assert (
                synthetic.interpretation_of(phase, contrast, "rim_brighter")
                == (voc.interpret("rim_brighter", contrast, phase, "grey")[0])
            )


# ------------------------------------------------------------------ quantity in the table


def _step(rim, core, n=40, noise=0.02, seed=0):
    d = np.arange(n) * 3.0
    v = core + (rim - core) * (d < 30.0) + np.random.default_rng(seed).normal(0, noise, n)
    return d, v


def test_read_profiles_records_the_quantity(tmp_path):
    d, fo = _step(86.9, 89.5)
    _, an = _step(60.0, 75.0)
    df = pd.DataFrame({"x": d, "fo": fo, "An (mol%)": an, "Sr": an * 10, "g": "a"})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    prof = read = nz.read_profiles(path, distance="x", value=["fo", "An (mol%)", "Sr"])
    assert dict(zip(read["channel"], read["quantity"], strict=True)) == {
        "fo": "Fo",
        "An (mol%)": "An",
        "Sr": "Sr",
    }
    # the quantity survives filtering and concatenation (it is a column)
    fo_only = prof[prof["channel"] == "fo"]
    both = pd.concat([fo_only, fo_only.assign(label="b")], ignore_index=True)
    assert (both["quantity"] == "Fo").all()
    # describe_zoning reads it: Fo falling to the rim of an olivine is normal zoning
    tab = describe_zoning(both, phase="olivine")
    assert list(tab["quantity"]) == ["Fo", "Fo"]
    assert list(tab["zoning_type"]) == ["rim_darker", "rim_darker"]
    assert list(tab["interpretation"]) == ["normal", "normal"]
    # the same numbers as BSE grey would read the other way: no silent default
    grey = describe_zoning(both.drop(columns="quantity"), phase="olivine")
    assert list(grey["quantity"]) == ["grey", "grey"] and list(grey["interpretation"]) == [
        "reverse",
        "reverse",
    ]
    # An falling to the rim of a plagioclase is normal zoning; Sr has no rule
    an_tab = describe_zoning(prof, phase="plagioclase", channel="An (mol%)")
    assert an_tab.loc[0, "interpretation"] == "normal"
    sr = describe_zoning(prof, phase="plagioclase", channel="Sr")
    assert sr.loc[0, "quantity"] == "Sr" and pd.isna(sr.loc[0, "interpretation"])
    assert "Sr" in sr.loc[0, "interpretation_note"]
    assert sr.loc[0, "describe_status"] == "ok" and sr.loc[0, "zoning_type"] == "rim_darker"


def test_calibration_and_the_user_set_the_quantity():
    d, grey = _step(150.0, 130.0, noise=0.5)
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": grey})
    # olivine: Fo = (1.12 - grey/255) / 0.006 falls as grey rises
    cal = calibrate(
        [140.0, 160.0], [(1.12 - 140 / 255) / 0.006, (1.12 - 160 / 255) / 0.006], name="Fo (mol%)"
    )
    fo = apply_calibration(prof, cal)
    a = describe_zoning(prof, phase="olivine").iloc[0]
    b = describe_zoning(fo, phase="olivine").iloc[0]
    assert a["quantity"] == "grey" and b["quantity"] == "Fo"
    assert a["zoning_type"] == "rim_brighter" and b["zoning_type"] == "rim_darker"
    # the same crystal, the same reading, whichever the quantity
    assert a["interpretation"] == b["interpretation"] == "normal"
    # the user's word wins over the column
    c = describe_zoning(fo, phase="olivine", quantity="Fa").iloc[0]
    assert c["quantity"] == "Fa" and c["interpretation"] == "reverse"
