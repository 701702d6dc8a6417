"""One decision per crystal: fit the steps :func:`~napari_zonation.describe_zoning` found.

:func:`fit_as_described` reads each crystal's description (``zoning_type``,
``step_positions_um``, ``plateau_levels``) and decides what to fit before any fit runs:

- no described step (``unzoned``, or a type without steps): not fitted, and said so;
- one described step: the one-step model, started from the described position and levels;
- several described steps (``multi_step``, ``oscillatory`` ... with steps): the outer step
  only, the youngest one, on the profile cut half way between the outer step and the next
  (a closed core boundary there), started from the described outer step;
- a crystal described in the ``scaled`` geometry (``depth_geometry``, see
  :func:`~napari_zonation.profiles.profiles_in_own_geometry`): its step positions are
  fractions of the radius, not distances from the rim, so one step is fitted from the
  rim-distance profile itself, as for an undescribed crystal.

Every crystal gets a ``describe_status`` in words, e.g. "fitted the step Describe found at
33.5 um", "Describe found no step: not fitted", "Describe: multi_step; fitted the outer step
only (at 4.1 um)", and when the fit does not confirm the described step, why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .api import fit_diffusion

#: the ``fit_status`` of a crystal in which the description has no step to fit
NOT_FITTED = "not fitted (Describe: no step)"


def _steps(row) -> tuple[float, ...]:
    pos = row.get("step_positions_um") if row is not None else None
    if isinstance(pos, (tuple, list, np.ndarray)):
        return tuple(float(p) for p in pos if np.isfinite(p))
    return ()


def _levels(row) -> tuple[float, ...]:
    lv = row.get("plateau_levels") if row is not None else None
    if isinstance(lv, (tuple, list, np.ndarray)):
        return tuple(float(v) for v in lv)
    return ()


def plan_from_description(prof: pd.DataFrame, zoning: pd.DataFrame) -> pd.DataFrame:
    """What to fit per crystal of ``prof`` from its description.

    Returns one row per label: ``label``, ``plan`` (``"none"``, ``"one"``, ``"outer"`` or
    ``"undescribed"``), ``zoning_type``, ``described_step_um`` (the step to fit),
    ``cut_um`` (the profile is fitted up to this distance; NaN: the whole profile),
    ``seed_levels`` (the described levels on both sides of that step) and
    ``describe_status`` (the decision in words).
    """
    z = zoning.drop_duplicates("label").set_index("label") if len(zoning) else None
    rows = []
    for label in pd.unique(prof["label"]):
        r = z.loc[label] if z is not None and label in z.index else None
        row = {"label": label, "zoning_type": None, "described_step_um": np.nan,
               "cut_um": np.nan, "seed_levels": None}
        if r is None:
            row.update(plan="undescribed",
                       describe_status="not described: one step fitted from the profile itself")
            rows.append(row)
            continue
        zt = str(r.get("zoning_type"))
        row["zoning_type"] = zt
        steps, levels = _steps(r), _levels(r)
        if zt == "unzoned" or not steps:
            why = "Describe found no step" if zt == "unzoned" else f"Describe: {zt}, no step"
            row.update(plan="none", describe_status=f"{why}: not fitted")
        elif str(r.get("depth_geometry", "distance")) == "scaled":
            # read on the relative radius: its positions are not distances from the rim
            row.update(plan="undescribed", describe_status=(
                f"Describe: {zt}, read on the outline scaled about the centre (its zones lie "
                "at one fraction of the radius, not at one distance from the rim): one step "
                "fitted from the rim-distance profile itself"))
        elif len(steps) == 1:
            row.update(plan="one", described_step_um=steps[0],
                       seed_levels=levels[:2] if len(levels) >= 2 else None,
                       describe_status=f"fitted the step Describe found at {steps[0]:.3g} µm")
        else:
            order = np.argsort(steps)
            s1, s2 = steps[order[0]], steps[order[1]]
            seed = None
            if len(levels) == len(steps) + 1:
                seed = (levels[order[0]], levels[order[0] + 1])
            row.update(plan="outer", described_step_um=s1, cut_um=0.5 * (s1 + s2),
                       seed_levels=seed,
                       describe_status=(f"Describe: {zt} ({len(steps)} steps); fitted the outer "
                                        f"step only (at {s1:.3g} µm, profile cut at "
                                        f"{0.5 * (s1 + s2):.3g} µm)"))
        rows.append(row)
    return pd.DataFrame(rows)


def fit_as_described(prof: pd.DataFrame, zoning: pd.DataFrame, **kwargs):
    """Fit each crystal's described step (one step, or the outer one of several) and say so.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table (``label``, ``distance_um``, ``value``, ...).
    zoning : pandas.DataFrame
        :func:`~napari_zonation.describe_zoning`'s table (``label``, ``zoning_type``,
        ``step_positions_um``, ``plateau_levels``).
    **kwargs
        Passed to :func:`~napari_zonation.fit_diffusion` (conditions, ``rim``,
        ``return_curves``...); ``model`` and ``zoning`` are set here (the one-step model
        started from the described step).

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, pandas.DataFrame)
        :func:`~napari_zonation.fit_diffusion`'s table with ``describe_status`` (the decision
        and, where the fit does not confirm the described step, why) and
        ``described_step_um``; crystals without a described step have ``fit_status``
        ``NOT_FITTED``. With ``return_curves=True`` also the curves.
    """
    kwargs = {k: v for k, v in kwargs.items() if k not in ("model", "zoning", "n_steps")}
    curves_wanted = bool(kwargs.get("return_curves"))
    plan = plan_from_description(prof, zoning)
    fit_labels = set(plan.loc[plan["plan"] != "none", "label"])
    parts = []
    for p in plan.itertuples(index=False):
        if p.label not in fit_labels:
            continue
        g = prof[prof["label"] == p.label]
        if np.isfinite(p.cut_um):
            g = g[pd.to_numeric(g["distance_um"], errors="coerce") < p.cut_um]
        parts.append(g)
    seed = plan[plan["plan"].isin(["one", "outer"])]
    seed_table = pd.DataFrame({
        "label": seed["label"],
        "step_positions_um": [(s,) for s in seed["described_step_um"]],
        "plateau_levels": list(seed["seed_levels"]),
    })
    if parts:
        out = fit_diffusion(pd.concat(parts, ignore_index=True), model="step",
                            zoning=seed_table, **kwargs)
        table, curves = out if curves_wanted else (out, None)
    else:
        table, curves = pd.DataFrame(columns=["label", "fit_status", "fit_error"]), None
    skipped = plan[plan["plan"] == "none"]
    if len(skipped):
        not_fitted = pd.DataFrame({
            "label": skipped["label"].astype(prof["label"].dtype), "model": "step",
            "fit_status": NOT_FITTED, "fit_error": skipped["describe_status"],
        })
        # no crystal fitted: the skipped rows alone (an empty table would make labels objects)
        table = pd.concat([table, not_fitted], ignore_index=True) if len(table) else not_fitted
    table = table.merge(plan[["label", "describe_status", "described_step_um"]], on="label",
                        how="left")
    table["describe_status"] = [_verdict(r) for r in table.to_dict("records")]
    if curves_wanted:
        return table, curves
    return table


def _verdict(r: dict) -> str:
    """The decision, and whether the fit confirms the described step."""
    text = str(r.get("describe_status") or "")
    status = r.get("fit_status")
    if status == NOT_FITTED or not np.isfinite(r.get("described_step_um", np.nan)):
        return text
    if status in ("ok", "unresolved"):
        pos = r.get("step_position_um", np.nan)
        if np.isfinite(pos):
            text += f"; fitted step at {pos:.3g} µm"
        return text
    return f"{text}; the fit does not confirm it ({status}: {r.get('fit_error', '')})"
