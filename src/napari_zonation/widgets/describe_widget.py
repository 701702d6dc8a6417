"""Describe zoning: numeric descriptors (offline) or numeric + LLM descriptors (openai).

Reads the profiles of a crystals Labels layer (``metadata["napari_zonation"]["profiles"]``;
shells profiles are computed first when there are none) and merges the descriptor table into
the layer's ``features``: existing columns such as ``phase`` or ``area_um2`` are kept,
descriptor columns are replaced.

A reference crystal (typed or picked with a click) and plain-text criteria work with both
backends: offline they give ``reference_similarity`` and ``criterion_<slug>`` columns (a
criterion outside the offline vocabulary is marked as needing the LLM); with the openai
backend the LLM's verdicts come beside them. Crystals that match (similarity at or above
the threshold and every judged criterion met) can be shown in a plugin-owned highlight
layer ``<crystals> matches``.

With the openai backend the widget shows, before a run, the requests, tokens and (for known
hosted models) the cost, and asks before anything is sent (:mod:`._describe_llm`). After the
run the status line says what each crystal was sent (text, plot, crop) and what the server
refused.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from .. import descriptors
from .. import profiles as zprof
from .._validation import ZonationInputError
from ..criteria import apply_criteria
from ..similarity import reference_similarity
from ._base import Progress, ZonationWidget, chunks, weak_method
from ._base import user_warnings as _user_warnings
from ._describe_llm import DescribeLLM
from ._forms import layer_combo
from ._layers import (
    KEY,
    ROLE,
    label_at,
    layer_image,
    pixel_size_of,
    upsert_layer,
    writable_crystals,
    zmeta,
)
from ._layers import is_crystals as _is_crystals
from ._results_table import ResultsTable
from ._tables import merge_table, profiles_of, quantity_of, set_table, table_of

N_CHUNKS = 10


def _notes_text(notes, n: int = 3) -> str:
    """The core's warnings for the status line: the first ``n`` and how many more."""
    notes = list(notes or [])
    if not notes:
        return ""
    text = " Notes: " + "; ".join(notes[:n])
    if len(notes) > n:
        text += f" (and {len(notes) - n} more)"
    return text


class DescribeWidget(DescribeLLM, ZonationWidget):
    """Dock widget: describe the zoning of every crystal (offline or with an LLM)."""

    title = "Describe zoning"
    run_text = "Describe zoning"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from napari.layers import Image, Labels

        self.labels_combo = self._add_combo(
            layer_combo(self.viewer, (Labels,), "Crystals", _is_crystals)
        )
        self.image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"))
        self.image_combo.tooltip = (
            "Used for shells profiles when the crystals have none yet, and for the crops "
            "sent to the LLM."
        )
        self.quantity = QComboBox()
        self.quantity.addItems(["grey", "composition"])
        self.quantity.setToolTip(
            "What the profile values are: BSE grey or a composition. 'composition' describes\n"
            "the calibrated profiles (Profiles widget, Calibration tab) when there are some."
        )
        self._form.addRow("Values are", self.quantity)
        self.backend = QComboBox()
        self.backend.addItems(["offline", "openai"])
        self.backend.setToolTip(
            "offline: numeric descriptors only (no network).\n"
            "openai: numeric + LLM descriptors from an OpenAI-compatible API (asks first)."
        )
        self._form.addRow("Backend", self.backend)

        ref_row = QWidget()
        hl = QHBoxLayout(ref_row)
        hl.setContentsMargins(0, 0, 0, 0)
        self.reference = QSpinBox()
        self.reference.setRange(0, 10**9)
        self.reference.setSpecialValueText("none")
        self.reference.setToolTip(
            "Label of a reference crystal: every crystal gets reference_similarity (0-1) to it;\n"
            "with the openai backend the LLM also judges it against this example."
        )
        self.pick_button = QPushButton("Pick")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Then click a crystal in the viewer to make it the reference.")
        self.pick_button.toggled.connect(self._on_pick_toggled)
        hl.addWidget(self.reference, 1)
        hl.addWidget(self.pick_button)
        self._form.addRow("Reference crystal", ref_row)
        self.criteria = QPlainTextEdit("")
        self.criteria.setPlaceholderText(
            "one criterion per line, e.g.\ntwo plateaus\nrim at least 10 % brighter than the core"
        )
        self.criteria.setToolTip(
            "Judged offline when written in the vocabulary (types, plateau/step counts,\n"
            "'rim at least X % brighter than the core', 'slope steeper than X per um', ...;\n"
            "see docs/llm.md); other criteria need the openai backend."
        )
        self.criteria.setMinimumHeight(48)
        self.criteria.setMaximumHeight(70)
        self._form.addRow("Criteria", self.criteria)
        hi_row = QWidget()
        hh = QHBoxLayout(hi_row)
        hh.setContentsMargins(0, 0, 0, 0)
        self.highlight = QCheckBox("highlight matches, similarity ≥")
        self.highlight.setChecked(True)
        self.highlight.setToolTip(
            "Show the crystals that match (similarity to the reference at or above the\n"
            "threshold, and every judged criterion met) in the layer '<crystals> matches'."
        )
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        hh.addWidget(self.highlight)
        hh.addWidget(self.threshold)
        self._form.addRow("", hi_row)
        self.ranking = QTableWidget(0, 0)
        self.ranking.setToolTip(
            "The crystals ranked by similarity to the reference (or by label), with their\n"
            "type and each criterion's verdict (✓ met, ✗ not met, ? needs the LLM)."
        )
        self.ranking.setMinimumHeight(220)
        self.ranking.setVisible(False)
        self._form.addRow(self.ranking)

        self._build_llm_section()
        self.backend.currentTextChanged.connect(self._on_backend)
        self._on_backend(self.backend.currentText())
        self.labels_combo.changed.connect(self._on_labels_changed)
        self._on_labels_changed(self.labels_combo.value)
        for sig in (
            self.model.textChanged,
            self.base_url.textChanged,
            self.criteria.textChanged,
            self.reference.valueChanged,
            self.send_images.toggled,
        ):
            sig.connect(self.update_estimate)
        self._pick_cb = weak_method(self._on_pick_click)
        self._pick_layer = None
        self._finish_layout(stretch=False)
        self.results = ResultsTable(self.viewer)
        self._layout.addWidget(self.results, 1)
        self.update_estimate()

    # ------------------------------------------------------------------ UI
    def _on_backend(self, text: str) -> None:
        self.llm_box.setVisible(text == "openai")
        self.update_estimate()

    def _on_labels_changed(self, layer=None) -> None:
        self._follow_source_image(self.labels_combo.value if layer is None else layer)
        if hasattr(self, "estimate"):
            self.update_estimate()

    def _criteria_list(self) -> list[str]:
        return [c.strip() for c in self.criteria.toPlainText().splitlines() if c.strip()]

    def _n_crystals(self) -> int:
        layer = self.labels_combo.value
        if layer is None:
            return 0
        prof = profiles_of(layer)
        if prof is not None:
            return int(prof["label"].nunique())
        return int(np.count_nonzero(np.unique(np.asarray(layer.data)))) if layer.data.size else 0

    def _on_pick_toggled(self, on: bool) -> None:
        if self._pick_layer is not None:
            try:
                self._pick_layer.mouse_drag_callbacks.remove(self._pick_cb)
            except ValueError:
                pass
            self._pick_layer = None
        if not on:
            return
        layer = self.labels_combo.value
        if layer is None:
            self.pick_button.setChecked(False)
            self.set_status("Choose a crystals layer first.", error=True)
            return
        layer.mouse_drag_callbacks.append(self._pick_cb)
        self._pick_layer = layer
        self.set_status(f"Click a crystal of '{layer.name}' to make it the reference.")

    def _on_pick_click(self, layer, event) -> None:
        if event.type != "mouse_press":
            return
        label = label_at(layer, event)
        if label is not None:
            self.pick_reference(label)

    def pick_reference(self, label: int) -> None:
        """Make ``label`` the reference crystal (what a click with 'Pick' on does)."""
        self.reference.setValue(int(label))
        self.pick_button.setChecked(False)
        self.set_status(f"Reference crystal: {label}.")

    # ------------------------------------------------------------------ job
    def _collect(self) -> dict:
        labels = self.labels_combo.value
        if labels is None:
            raise ZonationInputError("no crystals layer: run Segment crystals first.")
        image = self.image_combo.value
        quantity = self.quantity.currentText()
        prof = profiles_of(labels, calibrated=quantity == "composition")
        px = zmeta(labels, create=False).get(KEY.pixel_size_um) or pixel_size_of(image)[0] or 1.0
        if prof is None and image is None:
            raise ZonationInputError(
                f"'{labels.name}' has no profiles and there is no image to take them from: run "
                "Profiles first or open the image."
            )
        table = table_of(labels)
        if "label" not in table.columns:
            table = None
        backend = self.backend.currentText()
        opts = zmeta(labels, create=False).get(KEY.profile_options) or {}
        p = {
            "labels_layer": labels,
            "prof": prof,
            # the layer's profiles are its rim-distance shells in grey: the geometry test
            # reads them as the shells Describe computes itself
            "grey_shells": prof is not None
            and quantity != "composition"
            and opts.get("method") == "shells"
            and float(opts.get("pixel_size_um") or 0.0) == float(px),
            "table": table,
            "backend": backend,
            "quantity": quantity,
            "pixel_size_um": float(px),
            "labels": np.array(labels.data, copy=True),
            "image": layer_image(image) if image is not None else None,
        }
        img = p["image"]
        p["own_geometry"] = bool(
            (prof is None or p["grey_shells"])
            and img is not None
            and np.ndim(img) == 2
            and np.shape(img) == p["labels"].shape
        )
        p["reference"] = self.reference.value() or None
        p["criteria"] = self._criteria_list() or None
        p["highlight"] = self.highlight.isChecked()
        p["threshold"] = float(self.threshold.value())
        if backend == "openai":
            llm = self._collect_llm(prof, p["labels"])
            if llm is None:
                return None
            p["llm"] = llm
        return p

    def _labels_in(self, p: dict) -> list:
        if p["prof"] is not None:
            return sorted(p["prof"]["label"].unique())
        return [int(x) for x in np.unique(p["labels"]) if x > 0]

    def _steps(self, p: dict) -> int:
        n = len(self._labels_in(p))
        extra = 1 if p["prof"] is None or p["own_geometry"] else 0
        if p["backend"] == "openai":
            return extra + 1 + n
        return extra + len(chunks(range(n), N_CHUNKS))

    def _work(self, p: dict):
        prof = p["prof"]
        described = prof
        computed = None
        notes: list[str] = []  # the core's warnings, shown in the status line
        if prof is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                prof = zprof.rim_profiles(p["image"], p["labels"], p["pixel_size_um"])
            notes += _user_warnings(caught)
            computed = prof
        own = p["own_geometry"]
        if own:  # each crystal read in the geometry its image shows, as run_pipeline does
            described = zprof.profiles_in_own_geometry(
                prof, p["image"], p["labels"], p["pixel_size_um"]
            )
        if computed is not None or own:
            self.check_cancel()
            yield "Profiles and their geometry read from the image; describing…"
        table = p["table"]
        if p["backend"] == "offline":
            # the crystals that have a profile (the table's others get no row)
            cry = None if table is None else table[table["label"].isin(prof["label"])]

            def describe(progress):
                # the core's warnings are caught in the thread that raises them and shown
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)
                    out = descriptors.describe_zoning(
                        described, "offline", crystals=cry, quantity=p["quantity"],
                        progress=progress,
                    )
                return out, _user_warnings(caught)

            result, caught_notes = yield from self.calls_with_progress(
                describe,
                lambda done, total: Progress(
                    done, total, f"Described {done} of {total} crystals…"
                ),
            )
            notes += caught_notes
            if p["reference"] is not None:
                if p["reference"] not in set(result["label"]):
                    raise ZonationInputError(
                        f"reference crystal {p['reference']} has no profile; pick another."
                    )
                result = result.assign(
                    reference_similarity=reference_similarity(result, p["reference"], prof)
                )
            if p["criteria"]:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)
                    result = apply_criteria(result, p["criteria"])
                notes += _user_warnings(caught)
        else:
            result, llm_notes = yield from self._work_llm(p, described, table)
            notes += llm_notes
        return {"table": result, "computed_profiles": computed,
                "described_profiles": described if own else None,
                "notes": list(dict.fromkeys(notes))}

    def _apply(self, p: dict, r: dict) -> None:
        labels = p["labels_layer"]
        if labels not in self.viewer.layers:
            raise ZonationInputError(f"the layer '{labels.name}' was removed meanwhile.")
        labels = p["labels_layer"] = writable_crystals(self.viewer, labels)
        md = zmeta(labels)
        if r["computed_profiles"] is not None:
            md[KEY.profiles] = r["computed_profiles"]
            md[KEY.profile_options] = {"method": "shells", "pixel_size_um": p["pixel_size_um"]}
        if r.get("described_profiles") is not None:  # what Cluster embeds
            md[KEY.profiles_described] = r["described_profiles"]
        else:
            md.pop(KEY.profiles_described, None)
        result = r["table"]
        merged = merge_table(table_of(labels), result)
        if "describe_status" in merged.columns:
            merged["describe_status"] = merged["describe_status"].fillna("no_profile")
        set_table(labels, merged)
        msg = f"{len(result)} crystals described in '{labels.name}'"
        if quantity_of(p["prof"]):
            msg += f" (calibrated profiles, {quantity_of(p['prof'])})"
        if "zoning_type" in result.columns:
            counts = result["zoning_type"].value_counts()
            msg += ": " + ", ".join(f"{k} {v}" for k, v in counts.items())
        if "llm_status" in result.columns:
            st = result["llm_status"].value_counts()
            msg += ". LLM: " + ", ".join(f"{k} {v}" for k, v in st.items())
            msg += self._llm_sent(result)
        msg += self._judged(result)
        self.show_ranking(result)
        self.results.show_layer(labels)
        n_match = self._highlight(p, result)
        if n_match is not None:
            msg += f"; {n_match} matching crystal(s) highlighted in '{labels.name} matches'"
        self.set_status(msg + ". Click a row of the table to see its crystal; next: Cluster."
                        + _notes_text(r.get("notes")))

    # ------------------------------------------------------------------ reporting
    def show_ranking(self, result: pd.DataFrame, n_rows: int = 12) -> None:
        """Fill the ranking table: crystals by similarity, type, criteria verdicts."""
        crit = [
            c for c in result.columns if c.startswith("criterion_") and not c.endswith("_rationale")
        ]
        has_sim = "reference_similarity" in result.columns
        if not has_sim and not crit:
            self.ranking.setVisible(False)
            return
        tab = result.sort_values("reference_similarity", ascending=False) if has_sim else result
        tab = tab.head(n_rows)
        cols = ["label", "zoning_type"] + (["reference_similarity"] if has_sim else [])
        if "llm_reference_score" in result.columns:
            cols.append("llm_reference_score")
        heads = ["label", "type"] + (["similarity"] if has_sim else [])
        heads += ["LLM score"] if "llm_reference_score" in result.columns else []
        heads += [c.removeprefix("criterion_").replace("_", " ")[:22] for c in crit]
        self.ranking.setColumnCount(len(heads))
        self.ranking.setHorizontalHeaderLabels(heads)
        self.ranking.setRowCount(len(tab))
        for i, (_, row) in enumerate(tab.iterrows()):
            cells = []
            for c in cols:
                v = row[c]
                cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
            for c in crit:
                v = row[c]
                if pd.isna(v) and f"llm_{c}" in result.columns and not pd.isna(row[f"llm_{c}"]):
                    v = row[f"llm_{c}"]
                cells.append("?" if pd.isna(v) else ("✓" if bool(v) else "✗"))
            for j, text in enumerate(cells):
                self.ranking.setItem(i, j, QTableWidgetItem(text))
        self.ranking.resizeColumnsToContents()
        self.ranking.setVisible(True)

    @staticmethod
    def _judged(result: pd.DataFrame) -> str:
        info = result.attrs.get("criteria") or {}
        needs = [v["text"] for v in info.values() if v.get("needs_llm")]
        text = ""
        if "reference_similarity" in result.columns:
            top = result.sort_values("reference_similarity", ascending=False)["label"].iloc[1:4]
            text += "; most like the reference: " + ", ".join(str(int(x)) for x in top)
        if needs:
            text += f"; criteria needing the LLM (openai backend): {needs}"
        return text

    @staticmethod
    def matches(result: pd.DataFrame, threshold: float) -> list[int]:
        """Labels whose similarity reaches ``threshold`` and that meet every judged criterion
        (the LLM's verdict stands in for a criterion the offline vocabulary cannot judge)."""
        keep = pd.Series(True, index=result.index)
        used = False
        if "reference_similarity" in result.columns:
            keep &= result["reference_similarity"].fillna(0) >= threshold
            used = True
        for col in result.columns:
            if not col.startswith("criterion_") or col.endswith("_rationale"):
                continue
            verdict = result[col]
            llm_col = f"llm_{col}"
            if verdict.isna().all() and llm_col in result.columns:
                verdict = result[llm_col]
            if verdict.isna().all():
                continue
            keep &= verdict.fillna(False).astype(bool)
            used = True
        return [int(x) for x in result.loc[keep, "label"]] if used else []

    def _highlight(self, p: dict, result: pd.DataFrame) -> int | None:
        if not p.get("highlight") or (p.get("reference") is None and not p.get("criteria")):
            return None
        from napari.utils.colormaps import DirectLabelColormap

        layer = p["labels_layer"]
        ids = self.matches(result, p["threshold"])
        data = np.asarray(layer.data)
        mask = np.where(np.isin(data, ids), data, 0).astype(data.dtype, copy=False)
        colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        colors.update({i: (1.0, 0.85, 0.0, 1.0) for i in ids})
        if p.get("reference") is not None:
            colors[int(p["reference"])] = (1.0, 0.2, 0.2, 1.0)
            mask = np.where(data == int(p["reference"]), data, mask)
        upsert_layer(
            self.viewer,
            "labels",
            mask,
            role=ROLE.matches,
            source=layer,
            name=f"{layer.name} matches",
            meta={KEY.labels: ids, KEY.reference: p.get("reference")},
            colormap=DirectLabelColormap(color_dict=colors, name="matches"),
            opacity=0.6,
            scale=layer.scale,
            translate=layer.translate,
        )
        return len(ids)
