"""Describe zoning: numeric descriptors (offline) or numeric + LLM descriptors (openai).

Reads the profiles of a crystals Labels layer (``metadata["napari_zonation"]["profiles"]``;
shells profiles are computed first when there are none) and merges the descriptor table into
the layer's ``features``: existing columns such as ``phase`` or ``area_um2`` are kept,
descriptor columns are replaced.

With the openai backend the widget asks once per session before anything is sent
(:data:`_CONSENT_GIVEN`). The API key comes from ``$OPENAI_API_KEY`` or is typed for this
session only: it is passed to the call and never written to layer metadata, features or files.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .. import descriptors
from .. import profiles as zprof
from .._validation import ZonationInputError
from ._common import (
    ZonationWidget,
    chunks,
    concat,
    layer_combo,
    layer_image,
    merge_table,
    pixel_size_of,
    profiles_of,
    quantity_of,
    set_table,
    table_of,
    weak_method,
    zmeta,
)
from .profiles_widget import _is_crystals

#: Set once the user agreed, in this session, to send profiles (and crops) to an LLM API.
#: Tests set it to True to skip the dialog.
_CONSENT_GIVEN = False
DEFAULT_MODEL = "gpt-4o-mini"
N_CHUNKS = 10


def ask_consent(parent, base_url: str, model: str, n_crystals: int, images: bool) -> bool:
    """Ask once per session before data leave the machine; remembers a yes."""
    global _CONSENT_GIVEN
    if _CONSENT_GIVEN:
        return True
    where = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    what = "profiles, descriptors" + (" and image crops" if images else "")
    answer = QMessageBox.question(
        parent,
        "Send data to an LLM?",
        f"The {what} of {n_crystals} crystal(s) will be sent to {where} (model {model}).\n\n"
        "Send them? (You will not be asked again in this session.)",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    _CONSENT_GIVEN = answer == QMessageBox.StandardButton.Yes
    return _CONSENT_GIVEN


class DescribeWidget(ZonationWidget):
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

        self.llm_box = QWidget()
        from qtpy.QtWidgets import QFormLayout

        llm_form = QFormLayout(self.llm_box)
        llm_form.setContentsMargins(0, 0, 0, 0)
        self.model = QLineEdit(os.environ.get("NAPARI_ZONATION_MODEL", DEFAULT_MODEL))
        llm_form.addRow("Model", self.model)
        self.base_url = QLineEdit(os.environ.get("OPENAI_BASE_URL", ""))
        self.base_url.setPlaceholderText("https://api.openai.com/v1 (or a local server)")
        llm_form.addRow("Base URL", self.base_url)
        self.api_key = QLineEdit("")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText(
            "from $OPENAI_API_KEY"
            if os.environ.get("OPENAI_API_KEY")
            else "type a key (kept for this session only)"
        )
        self.api_key.setToolTip("Never saved: not in layers, features, settings or files.")
        llm_form.addRow("API key", self.api_key)
        ref_row = QWidget()
        hl = QHBoxLayout(ref_row)
        hl.setContentsMargins(0, 0, 0, 0)
        self.reference = QSpinBox()
        self.reference.setRange(0, 10**9)
        self.reference.setSpecialValueText("none")
        self.reference.setToolTip("Label of a reference crystal shown to the LLM as the example.")
        self.pick_button = QPushButton("Pick")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Then click a crystal in the viewer to make it the reference.")
        self.pick_button.toggled.connect(self._on_pick_toggled)
        hl.addWidget(self.reference, 1)
        hl.addWidget(self.pick_button)
        llm_form.addRow("Reference crystal", ref_row)
        self.reference_note = QLineEdit("")
        self.reference_note.setPlaceholderText("e.g. the reverse zoning I am looking for")
        llm_form.addRow("Reference note", self.reference_note)
        self.criteria = QPlainTextEdit("")
        self.criteria.setPlaceholderText(
            "one criterion per line, e.g.\nhas a dark resorption band\ncore is patchy"
        )
        self.criteria.setMaximumHeight(70)
        llm_form.addRow("Criteria", self.criteria)
        self.send_images = QCheckBox("send plots and crops")
        self.send_images.setChecked(True)
        self.send_images.setToolTip(
            "Multimodal: send each profile's plot and a crop of the crystal with its outline; "
            "off: numbers only (for text-only models)."
        )
        llm_form.addRow("", self.send_images)
        self._form.addRow(self.llm_box)
        self.backend.currentTextChanged.connect(self._on_backend)
        self._on_backend(self.backend.currentText())
        self.labels_combo.changed.connect(self._on_labels_changed)
        self._on_labels_changed(self.labels_combo.value)
        self._pick_cb = weak_method(self._on_pick_click)
        self._pick_layer = None
        self._finish_layout()

    # ------------------------------------------------------------------ UI
    def _on_backend(self, text: str) -> None:
        self.llm_box.setVisible(text == "openai")

    def _on_labels_changed(self, layer=None) -> None:
        self._follow_source_image(self.labels_combo.value if layer is None else layer)

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
        try:
            value = layer.get_value(
                event.position,
                view_direction=event.view_direction,
                dims_displayed=event.dims_displayed,
                world=True,
            )
        except Exception:  # noqa: BLE001 - outside the data
            return
        if value is None or int(value) <= 0:
            return
        self.pick_reference(int(value))

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
        px = zmeta(labels, create=False).get("pixel_size_um") or pixel_size_of(image)[0] or 1.0
        if prof is None and image is None:
            raise ZonationInputError(
                f"'{labels.name}' has no profiles and there is no image to take them from: run "
                "Profiles first or open the image."
            )
        table = table_of(labels)
        if "label" not in table.columns:
            table = None
        backend = self.backend.currentText()
        p = {
            "labels_layer": labels,
            "prof": prof,
            "table": table,
            "backend": backend,
            "quantity": quantity,
            "pixel_size_um": float(px),
            "labels": np.array(labels.data, copy=True),
            "image": layer_image(image) if image is not None else None,
        }
        if backend == "openai":
            n = prof["label"].nunique() if prof is not None else len(np.unique(p["labels"])) - 1
            criteria = [c.strip() for c in self.criteria.toPlainText().splitlines() if c.strip()]
            images = self.send_images.isChecked()
            if not ask_consent(
                self, self.base_url.text().strip(), self.model.text().strip(), n, images
            ):
                self.set_status("Nothing sent: the LLM backend needs your consent.")
                return None
            p["llm"] = {
                "model": self.model.text().strip() or DEFAULT_MODEL,
                "base_url": self.base_url.text().strip() or None,
                "api_key": self.api_key.text().strip() or None,
                "reference": self.reference.value() or None,
                "reference_note": self.reference_note.text().strip(),
                "criteria": criteria or None,
                "send_images": images,
            }
        return p

    def _labels_in(self, p: dict) -> list:
        if p["prof"] is not None:
            return sorted(p["prof"]["label"].unique())
        return [int(x) for x in np.unique(p["labels"]) if x > 0]

    def _steps(self, p: dict) -> int:
        n = len(self._labels_in(p))
        extra = 1 if p["prof"] is None else 0
        if p["backend"] == "openai":
            return extra + 1 + n
        return extra + len(chunks(range(n), N_CHUNKS))

    def _work(self, p: dict):
        prof = p["prof"]
        computed = None
        if prof is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                prof = zprof.rim_profiles(p["image"], p["labels"], p["pixel_size_um"])
            computed = prof
            self.check_cancel()
            yield "Shells profiles computed; describing…"
        table = p["table"]
        if p["backend"] == "offline":
            labs = sorted(prof["label"].unique())
            parts, done = [], 0
            for chunk in chunks(labs, N_CHUNKS):
                sub = prof[prof["label"].isin(chunk)]
                cry = table[table["label"].isin(chunk)] if table is not None else None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    parts.append(
                        descriptors.describe_zoning(
                            sub, "offline", crystals=cry, quantity=p["quantity"]
                        )
                    )
                done += len(chunk)
                self.check_cancel()
                yield f"Described {done} of {len(labs)} crystals…"
            result = concat(parts)
        else:
            result = yield from self._work_llm(p, prof, table)
        return {"table": result, "computed_profiles": computed}

    def _work_llm(self, p: dict, prof: pd.DataFrame, table):
        llm = dict(p["llm"])
        kwargs = {
            "crystals": table,
            "quantity": p["quantity"],
            "model": llm["model"],
            "base_url": llm["base_url"],
            "api_key": llm["api_key"],
            "reference": llm["reference"],
            "reference_note": llm["reference_note"],
            "criteria": llm["criteria"],
            "send_images": llm["send_images"],
        }
        if p["image"] is not None and p["image"].shape[-2:] == p["labels"].shape[-2:]:
            kwargs["image"] = p["image"]
            kwargs["labels"] = p["labels"]
        yield "Numeric descriptors, then the LLM…"
        # on Cancel the progress callback raises inside the call, which stops the requests
        # not yet started (answers already received stay in the cache)
        return (
            yield from self.calls_with_progress(
                descriptors.describe_zoning,
                lambda done, total: f"LLM: {done} of {total} crystals…",
                prof,
                "openai",
                **kwargs,
            )
        )

    def _apply(self, p: dict, r: dict) -> None:
        labels = p["labels_layer"]
        if labels not in self.viewer.layers:
            raise ZonationInputError(f"the layer '{labels.name}' was removed meanwhile.")
        if r["computed_profiles"] is not None:
            md = zmeta(labels)
            md["profiles"] = r["computed_profiles"]
            md["profile_options"] = {"method": "shells", "pixel_size_um": p["pixel_size_um"]}
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
        self.set_status(msg + ". Hover a crystal to see its row; next: Cluster.")
