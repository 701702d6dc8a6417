"""Per crystal whose outer zone has the glass's grey: how far inside its true outline the
segmentation stops, and what separates that zone from the glass in the image.

For every true crystal of the ``faint_rims`` scenes (or ``--kinds``) drawn with a rim at the
glass grey, one row: the cue the generator drew (``step``, ``dark_line``, ``bright_line``),
the zoning, the rim's step against the glass in units of the pixel noise, the width of the
zone at the glass grey (um: where the true grey departs from the glass by more than half the
pixel noise), the shortfall (mean distance from the true outline to the predicted label,
um; 0 when the label reaches it), its IoU, and the fine texture (mean squared high-pass grey,
sigma 1 px, in units of the noise variance) of the zone's pixels and of the glass's pixels
within 10 um outside the crystal: the change of texture at the edge.

    python benchmarks/segment_faint_rims.py --kinds faint_rims,real
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from segmentation import DEV_SEEDS, KIND_NOISE, PIXEL_SIZES, make_scene, parse_option

from napari_zonation import segment_crystals


def crystal_rows(s, pred: np.ndarray, px: float) -> list[dict]:
    """One row per true crystal with a rim at the glass grey (see the module's notes)."""
    img = s.image.astype(np.float64)
    noise = float(s.noise_dn)
    hp = img - ndi.gaussian_filter(img, 1.0)
    tex = hp * hp / (noise * noise)
    truth = s.truth.set_index("label")
    rows = []
    for lab, z in s.zonings.items():
        if lab not in truth.index or not bool(truth.loc[lab, "rim_at_glass"]):
            continue
        mask = s.labels == lab
        if mask.sum() < 50:
            continue
        sl = ndi.find_objects(mask.astype(np.int32))[0]
        pad = int(np.ceil(12 / px)) + 2
        sl = tuple(slice(max(a.start - pad, 0), a.stop + pad) for a in sl)
        m = mask[sl]
        din = ndi.distance_transform_edt(m) * px  # um inside
        dout = ndi.distance_transform_edt(~m) * px  # um outside
        p = pred[sl]
        ids, cnt = np.unique(p[m], return_counts=True)
        keep = ids > 0
        best = int(ids[keep][np.argmax(cnt[keep])]) if keep.any() else 0
        pm = p == best if best else np.zeros_like(m)
        inter = (pm & m).sum()
        iou = inter / max((pm | m).sum(), 1)
        outline = m & ~ndi.binary_erosion(m)
        short = ndi.distance_transform_edt(~pm) * px if pm.any() else np.full(m.shape, np.inf)
        shortfall = float(np.mean(short[outline]))
        d = np.linspace(0, 40, 401)
        dep = np.abs(z.grey(d) - s.glass_grey) * s.full_scale
        zone_w = float(d[np.argmax(dep > 0.5 * noise)]) if (dep > 0.5 * noise).any() else 40.0
        step = (z.grey(np.array([0.0]))[0] - s.glass_grey) * s.full_scale / noise
        others = s.labels[sl]
        zone = m & (din > 1.5) & (din < max(zone_w, 2.5))
        glass = (others == 0) & (dout > 1.5) & (dout < 10) & (s.vesicles[sl] == 0)
        rows.append(dict(
            label=lab, cue=truth.loc[lab, "rim_cue"], zoning=z.zoning_type,
            step_noise=float(step), zone_um=zone_w, shortfall_um=shortfall, iou=float(iou),
            tex_zone=float(tex[sl][zone].mean()) if zone.any() else np.nan,
            tex_glass=float(tex[sl][glass].mean()) if glass.any() else np.nan,
        ))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="faint_rims")
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--px", type=float, nargs="*", default=list(PIXEL_SIZES))
    parser.add_argument("--seeds", type=int, nargs="*", default=list(DEV_SEEDS["kinds"]))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    options = dict(parse_option(o) for o in args.option)
    out = []
    for kind in args.kinds.split(","):
        for seed in args.seeds:
            for px in args.px:
                spec = dict(kind=kind, seed=seed, noise=KIND_NOISE, bits=8, px=px)
                s = make_scene(spec, args.size)
                pred = segment_crystals(s.image, px, **options)
                for r in crystal_rows(s, pred, px):
                    out.append(dict(kind=kind, seed=seed, px=px) | r)
    df = pd.DataFrame(out)
    pd.set_option("display.width", 160)
    print(df.round(2).to_string(index=False))
    print("\nmedian per cue:")
    print(df.groupby("cue")[["step_noise", "zone_um", "shortfall_um", "iou", "tex_zone",
                             "tex_glass"]].median().round(2))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
