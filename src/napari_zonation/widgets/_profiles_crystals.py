"""Profiles dock, Crystals tab: ``rim_profiles`` of every crystal of a Labels layer (shells or
traverses), the editable traverses layer, and clicking a crystal to see its profile.

The long table goes to the Labels layer's ``metadata["napari_zonation"]["profiles"]``. With
traverses, a plugin-owned Shapes layer ``<image> traverses`` shows them (rim -> core); moving a
traverse's vertex re-profiles that crystal through the core (``profiles.traverse_table`` and
``profiles.traverse_profiles``).
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QWidget,
)

from .. import profiles as zprof
from .._validation import ZonationInputError
from ._base import recorded_warnings
from ._colors import label_color, to_hex
from ._coords import shape_to_image_px
from ._forms import core_default, layer_combo
from ._layers import (
    KEY,
    ROLE,
    find_layer,
    find_owned,
    image_pixel_size,
    is_crystals,
    label_at,
    layer_image,
    layer_uid,
    source_image,
    unwrap,
    upsert_layer,
    writable_crystals,
    zmeta,
)
from ._tables import concat, first_channel, profile_arrays, profiles_of, table_of

INFO_COLUMNS = (
    ("phase", "phase"),
    ("zoning_type", "zoning"),
    ("interpretation", "interpretation"),
    ("n_plateaus", "plateaus"),
    ("core_value", "core"),
    ("rim_value", "rim"),
    ("cluster", "cluster"),
    ("sqrt_dt_um", "√Dt (µm)"),
    ("timescale_days", "t (days)"),
    ("llm_zoning_type", "LLM"),
)


class CrystalsTool:
    """The Crystals tab of :class:`~.profiles_widget.ProfilesWidget` (a mixin of the dock)."""

    def _crystals_tab(self) -> QWidget:
        from napari.layers import Image, Labels

        tab = QWidget()
        form = QFormLayout(tab)
        self.labels_combo = self._add_combo(
            layer_combo(self.viewer, (Labels,), "Crystals", is_crystals), form
        )
        self.image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"), form)
        self.method = QComboBox()
        self.method.addItems(["shells", "traverse"])
        self.method.setCurrentText(core_default(zprof.rim_profiles, "method"))
        self.method.setToolTip(
            "shells: mean grey at each distance from the rim, cracks and inclusions clipped;\n"
            "traverse: one straight rim-to-core traverse per crystal, placed like an EPMA "
            "traverse (editable: move its ends in the '<image> traverses' layer)."
        )
        form.addRow("Method", self.method)
        self.width_um = QDoubleSpinBox()
        self.width_um.setRange(0.01, 1000)
        self.width_um.setValue(core_default(zprof.rim_profiles, "width_um"))
        self.width_um.setSuffix(" µm")
        self.width_um.setToolTip("Band width averaged across a traverse or a drawn line.")
        form.addRow("Traverse width", self.width_um)
        self.contacts = QComboBox()
        self.contacts.addItems(["exclude", "rim"])
        self.contacts.setCurrentText(core_default(zprof.rim_profiles, "contacts"))
        self.contacts.setToolTip(
            "Shells: faces shared with another crystal.\n"
            "exclude: only free faces (against groundmass) are rims, and pixels nearer a "
            "grain contact than a free face are left out (unbiased when a neighbour covers "
            "part of a crystal's zoning);\n"
            "rim: every face is a rim (distance to the nearest other label)."
        )
        form.addRow("Grain contacts", self.contacts)
        return tab

    def _collect_crystals(self) -> dict:
        labels, image = self.labels_combo.value, self.image_combo.value
        if labels is None:
            raise ZonationInputError(
                "no crystals: run Segment crystals first, or open a Labels layer."
            )
        if image is None:
            raise ZonationInputError("no image layer to take the profiles from.")
        px, note = image_pixel_size(image)
        px = zmeta(labels, create=False).get(KEY.pixel_size_um, px)
        return {
            "mode": "crystals",
            "labels_layer": labels,
            "image_layer": image,
            "labels": np.array(labels.data, copy=True),
            "image": layer_image(image),
            "pixel_size_um": float(px),
            "method": self.method.currentText(),
            "width_um": self.width_um.value(),
            "contacts": self.contacts.currentText(),
            "note": note,
        }

    def _work_crystals(self, p: dict):
        yield f"Profiling crystals ({p['method']})…"
        with recorded_warnings() as caught:
            out = zprof.rim_profiles(
                p["image"],
                p["labels"],
                p["pixel_size_um"],
                method=p["method"],
                width_um=p["width_um"],
                return_traverses=p["method"] == "traverse",
                contacts=p["contacts"],
            )
        prof, trav = out if isinstance(out, tuple) else (out, None)
        yield "Done."
        return {"prof": prof, "traverses": trav, "warnings": caught}

    def _apply_crystals(self, p: dict, r: dict) -> None:
        labels = writable_crystals(self.viewer, p["labels_layer"])
        p["labels_layer"] = labels
        image = p["image_layer"]
        prof, trav = r["prof"], r["traverses"]
        md = zmeta(labels)
        md[KEY.profiles] = prof
        md.pop(KEY.profiles_described, None)  # Describe reads the new profiles again
        md[KEY.profile_options] = {
            "method": p["method"],
            "width_um": p["width_um"],
            "contacts": p["contacts"],
            "pixel_size_um": p["pixel_size_um"],
        }
        md.setdefault(KEY.pixel_size_um, p["pixel_size_um"])
        md.setdefault(KEY.image_layer, image.name)
        md.setdefault(KEY.image_layer_id, layer_uid(image))
        if trav is not None:
            md[KEY.traverses] = trav
            self._show_traverses(labels, image, trav)
        self._make_clickable(labels)
        n_lab = len(np.unique(p["labels"][p["labels"] > 0]))
        n = prof["label"].nunique()
        fails = prof.attrs.get("failures", ())
        msg = f"{n} of {n_lab} crystals profiled ({p['method']})"
        if len(fails):
            msg += "; skipped: " + "; ".join(f"{a}: {b}" for a, b in fails[:3])
        if p.get("note"):
            msg += f" ({p['note']})"
        self.set_status(msg + ". Click a crystal to see its profile.")
        self.plot_crystals(labels)
        self.show_warnings(r.get("warnings", ()))

    def _show_traverses(self, labels, image, trav: pd.DataFrame) -> None:
        lines = [
            np.array([[t.rim_row, t.rim_col], [t.core_row, t.core_col]], float)
            for t in trav.itertuples()
        ]
        lines = [
            np.asarray([labels.world_to_data(image.data_to_world(v)) for v in ln])[:, -2:]
            if labels.ndim == image.ndim
            else ln
            for ln in lines
        ]
        colors = []
        for lab in trav["label"]:
            c = label_color(labels, int(lab))
            colors.append(c if c is not None and c[3] > 0 else np.array([1, 1, 0, 1.0]))
        feats = trav[["label", "length_um", "status"]].reset_index(drop=True)
        layer = find_owned(self.viewer, ROLE.traverses, image)
        if layer is not None:
            layer.events.data.disconnect(self._on_traverses_event)
            layer.events.set_data.disconnect(self._on_traverses_event)
        layer = upsert_layer(
            self.viewer,
            "shapes",
            lines,
            role=ROLE.traverses,
            source=image,
            name=f"{image.name} traverses",
            meta={KEY.labels_layer: labels.name, KEY.labels_layer_id: layer_uid(labels)},
            features=feats,
            shape_type="line",
            edge_color=np.asarray(colors) if colors else "yellow",
            edge_width=max(1.0, float(np.mean(labels.scale[-2:]))),
            scale=labels.scale[-2:],
            translate=labels.translate[-2:],
            units=tuple(labels.units)[-2:],
        )
        if len(colors):
            layer.edge_color = np.asarray(colors)
        layer.events.data.connect(self._on_traverses_event)
        layer.events.set_data.connect(self._on_traverses_event)
        self._traverses_layer = weakref.ref(unwrap(layer))

    def _on_traverses_event(self, event=None) -> None:
        if not self._trav_timer.isActive():
            self._trav_timer.start()

    def _refresh_traverses(self) -> None:
        ref = getattr(self, "_traverses_layer", None)
        layer = ref() if ref else None
        if layer is None or layer not in self.viewer.layers:
            return
        try:
            self.retraverse(layer)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)

    def retraverse(self, traverses) -> list[int]:
        """Re-profile the crystals whose traverse (a line of ``traverses``) was edited.

        The edited traverses' rows come from :func:`~napari_zonation.profiles.traverse_table`
        and their profiles from :func:`~napari_zonation.profiles.traverse_profiles` (same
        pixel size, band width and halo skipping as the first profiling); the other rows are
        kept as they are. Warnings from the core (e.g. a traverse moved past the image edge)
        go to the status line. Returns the labels re-profiled.
        """
        md = zmeta(traverses, create=False)
        labels = find_layer(self.viewer, md.get(KEY.labels_layer), md.get(KEY.labels_layer_id))
        image = source_image(self.viewer, traverses)
        if labels is None or image is None:
            return []
        lmd = zmeta(labels)
        trav, prof = lmd.get(KEY.traverses), profiles_of(labels)
        if trav is None or prof is None:
            return []
        feats = traverses.features
        if "label" not in feats.columns or len(feats) != len(traverses.data):
            return []
        opts = lmd.get(KEY.profile_options, {})
        px = float(opts.get("pixel_size_um", lmd.get(KEY.pixel_size_um, 1.0)))
        rows, edited = [], []  # kept rows of the old table; (label, rim, core) of edited ones
        for i, verts in enumerate(traverses.data):
            lab = feats["label"].iloc[i]
            if pd.isna(lab):
                continue
            lab = int(lab)
            rc = shape_to_image_px(traverses, image, verts)
            rim, core = rc[0], rc[-1]
            old = trav[trav["label"] == lab]
            if len(old):
                o = old.iloc[0]
                ends = [o.rim_row, o.rim_col, o.core_row, o.core_col]
                if np.allclose(ends, [*rim, *core], atol=1e-6):
                    rows.append(old.iloc[:1])
                    continue
            edited.append((lab, rim, core))
            rows.append(None)
        changed = [lab for lab, _, _ in edited]
        kept = {int(r["label"].iloc[0]) for r in rows if r is not None} | set(changed)
        removed = [int(x) for x in trav["label"] if int(x) not in kept]
        if not changed and not removed:
            return []
        new = zprof.traverse_table(
            changed,
            [rim for _, rim, _ in edited],
            [core for _, _, core in edited],
            px,
        )
        it = iter(range(len(new)))
        new_trav = concat(r if r is not None else new.iloc[[next(it)]] for r in rows)
        new_trav = new_trav.reindex(columns=trav.columns)
        parts = [prof[~prof["label"].isin(changed + removed)]]
        with recorded_warnings() as caught:
            if changed:
                parts.append(
                    zprof.traverse_profiles(
                        layer_image(image),
                        new,
                        px,
                        # the crystals' outlines, as rim_profiles gives them: the edge halo
                        # is skipped on a moved traverse as on the placed one
                        labels=np.asarray(labels.data),
                        width_um=float(
                            opts.get("width_um", core_default(zprof.traverse_profiles, "width_um"))
                        ),
                    )
                )
        lmd[KEY.traverses] = new_trav
        lmd[KEY.profiles] = concat(parts)
        lmd.pop(KEY.profiles_described, None)
        self.set_status(
            f"Re-profiled crystal(s) {', '.join(map(str, changed)) or '-'}"
            + (f"; dropped {', '.join(map(str, removed))}" if removed else "")
            + "."
        )
        if changed:
            self.show_crystal(labels, changed[-1])
        self.show_warnings(caught)
        return changed

    def plot_crystals(self, labels, highlight: int | None = None, max_lines: int = 80) -> None:
        prof = profiles_of(labels)
        if prof is None or not len(prof):
            self.plot.message("No profiles yet: run 'Profile all crystals'.")
            return
        ax = self.plot.axes(1)[0]
        labs = sorted(first_channel(prof)["label"].unique())
        for lab in labs[:max_lines]:
            if lab == highlight:
                continue
            d, v = profile_arrays(prof, lab)
            c = label_color(labels, int(lab))
            ax.plot(
                d,
                v,
                lw=0.8,
                alpha=0.55 if highlight is None else 0.2,
                color=to_hex(c) if c is not None and c[3] > 0 else "#999999",
            )
        if highlight is not None:
            sub = first_channel(prof)
            sub = sub[sub["label"] == highlight].sort_values("distance_um")
            c = label_color(labels, int(highlight))
            col = to_hex(c) if c is not None and c[3] > 0 else "#ffcc00"
            if "sigma" in sub and sub["sigma"].notna().any():
                ax.fill_between(
                    sub["distance_um"],
                    sub["value"] - sub["sigma"],
                    sub["value"] + sub["sigma"],
                    color=col,
                    alpha=0.3,
                    lw=0,
                )
            ax.plot(
                sub["distance_um"], sub["value"], color=col, lw=2.2, label=f"crystal {highlight}"
            )
            self.plot.legend(ax)
        ax.set_xlabel("distance from rim (µm)")
        ax.set_ylabel(self._value_name(prof))
        ax.set_title(
            f"crystal {highlight} of {len(labs)}"
            if highlight is not None
            else f"{len(labs)} crystal profiles"
        )
        self.plot.draw()

    def _on_labels_changed(self, layer=None) -> None:
        layer = self.labels_combo.value if layer is None else layer
        if layer is not None:
            self._follow_source_image(layer)
            self._make_clickable(layer)

    def _make_clickable(self, layer) -> None:
        from napari.layers import Labels

        if not isinstance(layer, Labels) or not is_crystals(layer):
            return
        if id(unwrap(layer)) in self._clickable:
            return
        self._clickable.add(id(unwrap(layer)))
        layer.mouse_drag_callbacks.append(self._click_cb)

    def _on_click(self, layer, event) -> None:
        if event.type != "mouse_press" or layer.mode != "pan_zoom":
            return
        if profiles_of(layer) is None:
            return
        label = label_at(layer, event)
        if label is not None:
            self.show_crystal(layer, label)

    def show_crystal(self, labels, label: int) -> None:
        """Plot one crystal's profile over the others and list its descriptors."""
        self.plot_crystals(labels, highlight=int(label))
        table = table_of(labels)
        parts = [f"<b>crystal {label}</b>"]
        if "label" in table.columns:
            row = table[table["label"] == label]
            if len(row):
                row = row.iloc[0]
                for col, name in INFO_COLUMNS:
                    if col in row.index and not (np.isscalar(row[col]) and pd.isna(row[col])):
                        val = row[col]
                        if isinstance(val, float | np.floating):
                            val = f"{val:.3g}"
                        parts.append(f"{name}: {val}")
        self.info.setText(" · ".join(parts))
