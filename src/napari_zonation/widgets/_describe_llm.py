"""The Describe dock's LLM (openai backend) part: the consent and budget dialogs, the "LLM
settings" section of the form with its estimate (requests, tokens and, for known hosted models,
the cost), the run's LLM parameters and the call itself (:meth:`DescribeLLM._work_llm`), and
the status-line summary of what was sent.

The user is asked once per session before anything is sent (:data:`_CONSENT_GIVEN`), and
every time a run may cost more than the budget. The API key comes from ``$OPENAI_API_KEY`` or
is typed for this session only: it is passed to the call and never written to layer metadata,
features or files.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QLabel, QLineEdit, QMessageBox

from .. import descriptors
from ..llm import DEFAULT_MODEL, cost_summary, estimate_llm_cost
from ._base import user_warnings as _user_warnings
from ._canvas import Section

#: Set once the user agreed, in this session, to send profiles (and crops) to an LLM API.
#: Tests set it to True to skip the dialog.
_CONSENT_GIVEN = False


def ask_consent(
    parent, base_url: str, model: str, n_crystals: int, images: bool, estimate: str = ""
) -> bool:
    """Ask once per session before data leave the machine; remembers a yes."""
    global _CONSENT_GIVEN
    if _CONSENT_GIVEN:
        return True
    where = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    what = "profiles, descriptors" + (" and image crops" if images else "")
    answer = QMessageBox.question(
        parent,
        "Send data to an LLM?",
        f"The {what} of {n_crystals} crystal(s) will be sent to {where} (model {model}).\n"
        + (f"Estimate: {estimate}.\n" if estimate else "")
        + "\nSend them? (You will not be asked again in this session.)",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    _CONSENT_GIVEN = answer == QMessageBox.StandardButton.Yes
    return _CONSENT_GIVEN


def ask_over_budget(parent, usd: float, budget: float) -> bool:
    """Ask before a run that may cost more than the budget (asked every time)."""
    answer = QMessageBox.question(
        parent,
        "Over budget",
        f"This run may cost about {usd:.4f} USD, more than your budget of {budget:g} USD.\n\n"
        "Send it anyway?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class DescribeLLM:
    """The Describe widget's LLM settings, estimate, dialogs and call (mixed into
    ``DescribeWidget``)."""

    def _build_llm_section(self) -> None:
        """The "LLM settings (openai backend)" section of the form."""
        self.llm_box = Section("LLM settings (openai backend)", expanded=True)
        llm_form = self.llm_box.form
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
        self.reference_note = QLineEdit("")
        self.reference_note.setPlaceholderText("e.g. the reverse zoning I am looking for")
        llm_form.addRow("Reference note", self.reference_note)
        self.send_images = QCheckBox("send plots and crops")
        self.send_images.setChecked(True)
        self.send_images.setToolTip(
            "Multimodal: send each profile's plot and a crop of the crystal with its outline.\n"
            "A server that refuses pictures gets text only (found once per run)."
        )
        llm_form.addRow("", self.send_images)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.0, 10_000.0)
        self.budget.setDecimals(2)
        self.budget.setValue(1.0)
        self.budget.setSpecialValueText("none")
        self.budget.setSuffix(" USD")
        self.budget.setToolTip(
            "Ask before a run whose estimated cost is above this (known hosted models);\n"
            "sending also stops once the answers received cost this much."
        )
        llm_form.addRow("Budget", self.budget)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        llm_form.addRow("Estimate", self.estimate)
        self._form.addRow(self.llm_box)

    def llm_estimate(self) -> dict:
        """Requests, tokens and cost of an openai run with the current settings."""
        crops = self.image_combo.value is not None
        return estimate_llm_cost(
            self._n_crystals(),
            self.send_images.isChecked(),
            crops=crops,
            reference=self.reference.value() > 0,
            n_criteria=len(self._criteria_list()),
            model=self.model.text().strip() or DEFAULT_MODEL,
            base_url=self.base_url.text().strip() or os.environ.get("OPENAI_BASE_URL") or None,
        )

    def update_estimate(self, *args) -> None:
        """Refresh the estimate line (requests, tokens, cost) of the LLM settings."""
        if self.backend.currentText() != "openai":
            return
        try:
            self.estimate.setText(cost_summary(self.llm_estimate()) + " (cached answers: free)")
        except Exception as exc:  # noqa: BLE001 - an estimate must never break the widget
            self.estimate.setText(f"no estimate ({exc})")

    def _collect_llm(self, prof: pd.DataFrame | None, labels: np.ndarray) -> dict | None:
        """The LLM parameters of a run, after consent (and the budget) were asked; None when
        the user said no."""
        n = prof["label"].nunique() if prof is not None else len(np.unique(labels)) - 1
        images = self.send_images.isChecked()
        est = self.llm_estimate()
        if not ask_consent(
            self,
            self.base_url.text().strip(),
            self.model.text().strip(),
            n,
            images,
            cost_summary(est),
        ):
            self.set_status("Nothing sent: the LLM backend needs your consent.")
            return None
        budget = float(self.budget.value()) or None
        if budget is not None and est["usd"] is not None and est["usd"] > budget:
            if not ask_over_budget(self, est["usd"], budget):
                self.set_status(
                    f"Nothing sent: the estimate ({est['usd']:.4f} USD) is over the budget."
                )
                return None
            budget = None  # the user accepted this run's estimate
        return {
            "model": self.model.text().strip() or DEFAULT_MODEL,
            "base_url": self.base_url.text().strip() or None,
            "api_key": self.api_key.text().strip() or None,
            "reference_note": self.reference_note.text().strip(),
            "send_images": images,
            "budget_usd": budget,
        }

    def _work_llm(self, p: dict, prof: pd.DataFrame, table):
        llm = dict(p["llm"])
        kwargs = {
            "crystals": table,
            "quantity": p["quantity"],
            "model": llm["model"],
            "base_url": llm["base_url"],
            "api_key": llm["api_key"],
            "reference": p["reference"],
            "reference_note": llm["reference_note"],
            "criteria": p["criteria"],
            "send_images": llm["send_images"],
            "budget_usd": llm["budget_usd"],
            "cancel": self._cancel_event.is_set,
        }
        if p["image"] is not None and p["image"].shape[-2:] == p["labels"].shape[-2:]:
            kwargs["image"] = p["image"]
            kwargs["labels"] = p["labels"]
        yield "Numeric descriptors, then the LLM…"
        # on Cancel the call stops within a fraction of a second (requests not yet started
        # are not sent; answers already received stay in the cache); the core's warnings
        # are caught in the thread that raises them and shown, as on the offline path

        def describe(progress):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                out = descriptors.describe_zoning(
                    prof, "openai", progress=progress, **kwargs
                )
            return out, _user_warnings(caught)

        return (
            yield from self.calls_with_progress(
                describe, lambda done, total: f"LLM: {done} of {total} crystals…"
            )
        )

    @staticmethod
    def _llm_sent(result: pd.DataFrame) -> str:
        run = result.attrs.get("llm_run") or {}
        inputs = result.loc[result["llm_status"] == "ok", "llm_inputs"].value_counts()
        text = ""
        if len(inputs):
            text += "; sent " + ", ".join(f"{k} ({v})" for k, v in inputs.items())
        if run.get("fallbacks"):
            text += f"; the server refused pictures ({run['requested_inputs']} -> {run['inputs']})"
        if run:
            tokens = int(run.get("prompt_tokens", 0)) + int(run.get("completion_tokens", 0))
            text += f"; {run.get('requests', 0)} request(s), {tokens:,} tokens"
            if run.get("usd"):
                text += f", {run['usd']:.4f} USD"
            if run.get("stopped"):
                text += f"; stopped: {run['stopped']}"
        return text
