"""Ready-made sets of the realism options of the synthetic thin section
(:func:`~napari_zonation.synthetic.make_thin_section`): :data:`SCENE_KINDS`."""

from __future__ import annotations

#: ready-made sets of the realism options of :func:`make_thin_section`, one per kind of what
#: real BSE images carry (``make_thin_section(..., **SCENE_KINDS["glassy"])``); "real" has
#: them all at once (with a bright glass: the faint olivine rims, not the glass-zoned laths)
SCENE_KINDS: dict[str, dict] = {
    "glassy": {"groundmass": "glass", "n_vesicles": 14, "vesicle_contact": 0.3},
    "epoxy": {"epoxy_fraction": 0.12, "plucked_holes": 15.0},
    "faint_rims": {
        "groundmass": "glass",
        "faint_rims": 1.0,
        "phases": ("olivine", "clinopyroxene"),
        "glass_texture": 0.012,
    },
    "glass_laths": {"glass_zoned_laths": 0.8, "phases": ("plagioclase", "olivine")},
    "halo": {"edge_halo": 0.35},
    "instrument": {"scan_lines": 6, "data_bar": True, "jpeg_quality": 75},
    "glomerocrysts": {"touching_fraction": 0.6, "crack_contacts": 1.0, "crack_fraction": 0.8},
    "needles": {"needles": 0.06},
    "real": {
        "groundmass": "glass",
        "n_vesicles": 10,
        "vesicle_contact": 0.3,
        "epoxy_fraction": 0.06,
        "plucked_holes": 10.0,
        "faint_rims": 0.6,
        "edge_halo": 0.3,
        "touching_fraction": 0.35,
        "crack_contacts": 0.7,
        "needles": 0.03,
        "scan_lines": 4,
        "data_bar": True,
        "jpeg_quality": 80,
    },
}
