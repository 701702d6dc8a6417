"""Render the Diffusion timescales dock for docs/diffusion.md.

The real Kilauea olivine traverses (EPMA, shipped with the package) are imported as a user
imports a table, fitted with the DFENS law under Ol13A's published conditions, and the dock
(with its profile, model, initial profile, rim boundary and residuals) is saved as
``docs/images/diffusion_widget.png``; the population view as ``diffusion_population.png``.

    QT_API=pyqt6 QT_QPA_PLATFORM=xcb XDG_RUNTIME_DIR=$(mktemp -d) \\
        xvfb-run -a -s "-screen 0 1600x1200x24 -nolisten tcp" \\
        .venv/bin/python docs/diffusion_screenshot.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from screenshot import _run, _settle, _viewer  # noqa: E402


def main() -> None:
    import napari_zonation as nz
    from napari_zonation.widgets._profile_store import profile_store
    from napari_zonation.widgets.diffusion_widget import DiffusionWidget

    viewer, app = _viewer((1500, 1150))
    data = Path(nz.__file__).parent / "data" / "olivine_kilauea" / "olivine_traverses.csv"
    prof = nz.read_profiles(data, distance="distance_um", value="fo", label="profile",
                            sigma="fo_err")
    prof = prof[prof["label"].isin(["Ol13A", "Ol1A", "Ol2B", "Ol5B_lg"])]
    w = DiffusionWidget(viewer)
    profile_store.put(viewer, "kilauea", prof)
    viewer.window.add_dock_widget(w, name="Diffusion timescales", area="right")
    _settle(app)
    w.reset_choices()
    w.source_combo.value = "imported: kilauea"
    w.mineral.setCurrentText("olivine Fe-Mg, DFENS (Mutch et al. 2021)")
    w.temperature.setValue(1225.0)
    w.temperature_err.setValue(15.0)
    w.pressure.setValue(74.0)
    w.pressure_err.setValue(10.0)
    w.delta_qfm.setValue(0.10)
    w.delta_qfm_err.setValue(0.22)
    w.angles_known.setChecked(True)
    w.angle_a.setValue(81.5)
    w.angle_b.setValue(87.3)
    w.angle_c.setValue(9.0)
    _run(w, app)
    w.plot_fit()
    _settle(app, 1.0)
    dock = w.parentWidget() or w
    dock.grab().save(str(HERE / "images" / "diffusion_widget.png"))
    print("saved", HERE / "images" / "diffusion_widget.png")
    w.plot_population()
    _settle(app, 1.0)
    w.plot.grab().save(str(HERE / "images" / "diffusion_population.png"))
    print("saved", HERE / "images" / "diffusion_population.png")
    viewer.close()


if __name__ == "__main__":
    main()
