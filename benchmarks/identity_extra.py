"""Outputs ``benchmarks/identity.py`` does not cover, saved or compared the same way.

    PYTHONPATH=/old/src python benchmarks/identity_extra.py save BEFORE.pkl
    python benchmarks/identity_extra.py compare BEFORE.pkl   # exits 1 on any difference

What is saved: the labels and crystal table of ``segment_crystals`` on four synthetic scenes
(seeds, noise, bit depths, a three-channel element-map stack), rim profiles with the halo band,
placed traverses and their profiles, ``describe_zoning`` on the rim profiles, on the Kilauea
olivine traverses and on randomised shape-family profiles (and their clustering and
embedding, with and without the profiles' shapes), and the synthetic scenes' images.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

import napari_zonation as nz
from napari_zonation.profiles import place_traverses, traverse_profiles
from napari_zonation.synthetic_profiles import make_random_profiles

sys.path.insert(0, str(Path(__file__).parent))
import identity  # noqa: E402
from diffusion import KILAUEA  # noqa: E402


def outputs() -> dict[str, object]:
    """Every output compared, by name."""
    out: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed, noise, bits in ((0, 0.01, 8), (1, 0.03, 16), (2, 0.05, 8)):
            s = nz.make_thin_section(shape=(320, 320), n_crystals=7, seed=seed, noise=noise,
                                     bit_depth=bits)
            out[f"image_{seed}"] = s.image
            lab = nz.segment_crystals(s.image, pixel_size_um=s.pixel_size_um)
            out[f"labels_{seed}"] = lab
            out[f"table_{seed}"] = nz.crystal_table(s.image, lab, s.pixel_size_um)
            rims = nz.rim_profiles(s.image, lab, pixel_size_um=s.pixel_size_um, halo_um=2.0)
            out[f"rims_{seed}"] = rims
            out[f"describe_{seed}"] = nz.describe_zoning(rims)
            tr = place_traverses(lab, s.pixel_size_um, image=s.image)
            out[f"traverses_{seed}"] = tr
            out[f"traverse_profiles_{seed}"] = traverse_profiles(s.image, tr, s.pixel_size_um)
        s = nz.make_thin_section(shape=(256, 256), n_crystals=5, seed=4)
        g = s.image.astype(float)
        stack = np.stack([g, 255.0 - g, np.sqrt(g + 1.0) * 7.0])
        lab = nz.segment_crystals(stack, pixel_size_um=s.pixel_size_um)
        out["stack_labels"] = lab
        out["stack_table"] = nz.crystal_table(stack, lab, s.pixel_size_um)
        prof = nz.read_profiles(KILAUEA / "olivine_traverses.csv", distance="distance_um",
                                value="fo", label="profile", sigma="fo_err")
        out["kilauea_describe"] = nz.describe_zoning(prof, phase="olivine")
        rnd, truth = make_random_profiles(3, seed=11)
        out["random_profiles"] = rnd
        desc = nz.describe_zoning(rnd)
        out["random_describe"] = desc
        out["random_clusters"] = nz.cluster_crystals(desc, 4, profiles=rnd)
        out["random_embedding"] = nz.embed_crystals(desc, profiles=rnd)
        out["random_clusters_table"] = nz.cluster_crystals(desc, 4)
    return out


if __name__ == "__main__":
    raise SystemExit(identity.main(sys.argv[1:], outputs))
