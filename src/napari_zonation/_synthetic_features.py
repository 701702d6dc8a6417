"""What real BSE images of volcanic thin sections carry besides zoned crystals in a microlite
groundmass: the rendering helpers behind the realism options of
:func:`napari_zonation.synthetic.make_thin_section`.

Each helper draws one kind of feature with its own random generator, so that turning one
option on never changes what the others draw. Greys are fractions of full scale; sizes are in
micrometres, converted with the pixel size. ``docs/synthetic.md`` describes what each feature
looks like on real images and how it is rendered here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.fft import dctn, idctn
from skimage.draw import polygon

#: one independent random stream per feature (``np.random.default_rng([seed, STREAM[name]])``)
STREAM = {
    "glass": 101,
    "needles": 102,
    "zoning": 103,
    "contacts": 104,
    "vesicles": 105,
    "epoxy": 106,
    "holes": 107,
    "halo": 108,
    "scan": 109,
    "bar": 110,
    "jpeg": 111,
    "thin": 112,
}

#: grey of the black mounting epoxy and of plucked holes (near 0: C, H, O)
EPOXY_GREY = (0.0, 0.03)

# the standard JPEG luminance quantisation table (quality 50)
_JPEG_Q50 = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def stream(seed: int, name: str) -> np.random.Generator:
    """The random generator of one feature for a scene's seed."""
    return np.random.default_rng([int(seed), STREAM[name]])


def smooth_field(shape, scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field of unit standard deviation varying over about ``scale_px``."""
    H, W = int(shape[0]), int(shape[1])
    f = max(1, int(round(scale_px / 3.0)))
    coarse = ndi.gaussian_filter(rng.normal(size=(H // f + 4, W // f + 4)), 1.5)
    field = ndi.zoom(coarse, f, order=1)[:H, :W] if f > 1 else coarse[:H, :W]
    field = field - field.mean()
    return field / max(float(field.std()), 1e-12)


def glass_canvas(
    shape, glass: float, px: float, rng: np.random.Generator, texture: float = 0.0
) -> np.ndarray:
    """Smooth glass: its grey, faint schlieren (0.4 % of full scale over ~60 um) and, when
    ``texture`` > 0, a fine speckle of ~1.5 um grains (quench crystallites) of that 1-sigma
    amplitude."""
    canvas = glass + 0.004 * smooth_field(shape, 60.0 / px, rng)
    if texture > 0:
        speck = ndi.gaussian_filter(rng.normal(size=canvas.shape), max(0.6 / px, 0.5))
        canvas += texture * speck / max(float(speck.std()), 1e-12)
    return canvas


def _rectangle(centre, length: float, width: float, angle: float) -> np.ndarray:
    h, w = length / 2, width / 2
    v = np.array([[-h, -w], [h, -w], [h, w], [-h, w]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return v @ rot.T + np.asarray(centre, dtype=float)


def _fill(canvas, mask, vertices, value) -> int:
    rr, cc = polygon(vertices[:, 0], vertices[:, 1], shape=canvas.shape)
    canvas[rr, cc] = value
    mask[rr, cc] = True
    return rr.size


def draw_needles(
    canvas: np.ndarray, px: float, fraction: float, greys: tuple, rng: np.random.Generator
) -> np.ndarray:
    """Needle microlites (15-80 um long, 0.8-2 um wide) and microlite clusters (radiating
    sprays and clumps of equant grains, 20-70 um across) covering about ``fraction`` of the
    field, in the greys of ``greys`` (plagioclase, pyroxene). They are groundmass, never
    crystals. Returns their mask."""
    H, W = canvas.shape
    mask = np.zeros(canvas.shape, dtype=bool)
    target = fraction * H * W
    covered = 0
    while covered < target:
        c = rng.uniform([0, 0], [H, W])
        grey = greys[int(rng.random() < 0.35)]
        kind = rng.random()
        if kind < 0.55:  # a single needle
            length = rng.uniform(15.0, 80.0) / px
            width = max(rng.uniform(0.8, 2.0) / px, 1.0)
            covered += _fill(canvas, mask, _rectangle(c, length, width, rng.uniform(0, np.pi)),
                             grey)
        elif kind < 0.85:  # a spray of needles from one point (bow-tie or fan)
            n = int(rng.integers(6, 17))
            a0, spread = rng.uniform(0, 2 * np.pi), rng.uniform(0.5 * np.pi, 2 * np.pi)
            for a in a0 + spread * rng.random(n):
                length = rng.uniform(10.0, 35.0) / px
                width = max(rng.uniform(0.8, 1.6) / px, 1.0)
                mid = c + 0.5 * length * np.array([np.sin(a), np.cos(a)])
                covered += _fill(canvas, mask, _rectangle(mid, length, width, a), grey)
        else:  # a clump of equant microlites
            n = int(rng.integers(8, 26))
            spread = rng.uniform(10.0, 25.0) / px
            for p in c + rng.normal(0.0, 0.5 * spread, size=(n, 2)):
                side = max(rng.uniform(2.0, 5.0) / px, 1.5)
                covered += _fill(canvas, mask, _rectangle(p, side, side * rng.uniform(0.6, 1.0),
                                                          rng.uniform(0, np.pi)), grey)
    return mask


def render_vesicle(
    canvas: np.ndarray, centre, radius: float, glass: float, px: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Draw one round vesicle as a BSE image shows it: a near-black interior, often the bright
    floor of the cavity below the section (a ramp from dark to 0.7-0.9 of full scale toward
    one wall), a polished wall 1-3 um wide bright on one side and glass-grey on the other, and
    a bright halo one or two pixels wide just outside the rim (edge effect).

    Returns the vesicle's mask (the disc ``distance < radius``), the halo's mask, both on the
    box ``sl`` of the canvas.
    """
    H, W = canvas.shape
    halo_w = rng.uniform(1.0, 2.0)
    m = int(np.ceil(radius + 3 * halo_w + 2))
    r0, r1 = max(int(centre[0]) - m, 0), min(int(centre[0]) + m + 1, H)
    c0, c1 = max(int(centre[1]) - m, 0), min(int(centre[1]) + m + 1, W)
    sl = (slice(r0, r1), slice(c0, c1))
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    rho = np.hypot(dy, dx)
    inside = rho < radius
    phi0 = rng.uniform(-np.pi, np.pi)
    u = np.array([np.sin(phi0), np.cos(phi0)])
    proj = (dy * u[0] + dx * u[1]) / max(radius, 1e-9)  # -1 .. 1 across, +1 toward the lit wall
    dark = rng.uniform(*EPOXY_GREY) + 0.02
    val = np.full(rho.shape, dark)
    if rng.random() < 0.75:  # the floor of the cavity, seen through the section
        rf = radius * rng.uniform(0.45, 0.85)
        off = (radius - rf) * rng.uniform(0.5, 1.0)
        rho_f = np.hypot(dy - off * u[0], dx - off * u[1])
        lo, hi = rng.uniform(0.06, 0.3), rng.uniform(0.7, 0.92)
        ramp = lo + (hi - lo) * np.clip((proj + 1) / 2, 0, 1) ** rng.uniform(1.0, 2.5)
        w = np.clip((rf - rho_f) / max(1.5, 1.0 / px), 0, 1)
        val = val * (1 - w) + ramp * w
    wall_w = max(rng.uniform(1.0, 3.0) / px, 1.0)
    lit = np.clip(proj, 0, 1)
    wall = (rho > radius - wall_w) & inside
    wall_grey = glass + (rng.uniform(0.7, 0.9) - glass) * lit
    val = np.where(wall, wall_grey, val)
    box = canvas[sl]
    box[inside] = val[inside]
    halo = (~inside) & (rho < radius + 3 * halo_w)
    amp = rng.uniform(0.08, 0.25)
    box[halo] = np.clip(box[halo] + amp * np.exp(-(rho[halo] - radius) / halo_w), 0, 1)
    return inside, halo & (rho < radius + halo_w + 0.5), sl


def epoxy_regions(shape, px: float, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Mask of black mounting-epoxy regions covering about ``fraction`` of the field: smooth
    blobs some hundred micrometres across (where the section ends or was plucked), edges
    rough at the micrometre scale."""
    if fraction <= 0:
        return np.zeros(shape, dtype=bool)
    field = smooth_field(shape, 150.0 / px, rng) + 0.03 * smooth_field(shape, 6.0 / px, rng)
    mask = field > np.quantile(field, 1.0 - fraction)
    return ndi.binary_opening(mask, iterations=max(1, int(round(2.0 / px))))


def hole_polygon(centre, radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular roundish outline (row, col) of mean radius ``radius`` (a plucked hole)."""
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    r = radius * (1 + sum(rng.uniform(0, 0.15) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
                          for k in (2, 3, 5)))
    r *= rng.uniform(0.6, 1.0) ** np.cos(t - rng.uniform(0, np.pi)) ** 2  # a little elongated
    return np.stack([centre[0] + r * np.sin(t), centre[1] + r * np.cos(t)], axis=1)


def halo_rings(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and second pixel rings of every crystal at its free faces (next to
    groundmass, vesicle or epoxy, not at a contact with another crystal nor at the image
    edge): ``(first, second)`` boolean masks."""
    d = ndi.distance_transform_edt(labels > 0)
    first = (labels > 0) & (d < 1.5)
    second = (d >= 1.5) & (d < 2.5)
    return first, second


def add_edge_halos(
    canvas: np.ndarray,
    labels: np.ndarray,
    amplitude: float,
    rng: np.random.Generator,
    n_labels: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brighten the outermost one or two pixels of every crystal at its free faces (the BSE
    edge effect at a polished grain's edge): per crystal a width of 1 or 2 px and an amplitude
    of 0.5-1 x ``amplitude`` (fraction of full scale) on the first ring, 0.4-0.8 of it on the
    second. The halo lies inside the true mask (the crystal's outline does not move).

    Returns the halo mask, and per label (index = label, ``n_labels`` of them, at least
    ``labels.max() + 1``) the halo width in px and the first ring's amplitude.
    """
    n = max(int(labels.max()) + 1, int(n_labels or 0))
    width = rng.integers(1, 3, size=n)
    amp = amplitude * rng.uniform(0.5, 1.0, size=n)
    ratio = rng.uniform(0.4, 0.8, size=n)
    width[0], amp[0] = 0, 0.0
    first, second = halo_rings(labels)
    second &= width[labels] == 2
    canvas[first] += amp[labels[first]]
    canvas[second] += (amp * ratio)[labels[second]]
    np.clip(canvas, 0.0, 1.0, out=canvas)
    return first | second, width, amp


def add_scan_lines(signal: np.ndarray, n_bands: int, rng: np.random.Generator) -> None:
    """Horizontal scan-line and charging artefacts, in place: a gain jitter of 0.3 % per row
    and ``n_bands`` bright bands 1-4 rows tall (+3 to +18 % of full scale), each across the
    whole row or starting at a column and fading to the right (a charging streak)."""
    H, W = signal.shape
    signal *= (1.0 + rng.normal(0.0, 0.003, size=H))[:, None]
    x = np.arange(W, dtype=np.float64)
    for _ in range(int(n_bands)):
        r0 = int(rng.integers(H))
        h = int(rng.integers(1, 5))
        a = rng.uniform(0.03, 0.18)
        if rng.random() < 0.5:
            prof = np.ones(W)
        else:
            c0, length = rng.uniform(0, W), rng.uniform(0.1, 1.0) * W
            prof = np.where(x >= c0, np.exp(-(x - c0) / length), 0.0)
        signal[r0 : r0 + h] += a * prof


def data_bar(shape, rng: np.random.Generator) -> np.ndarray:
    """The instrument's data bar (grey, fraction of full scale) for the bottom rows of an image
    of ``shape``: about 6 % of the height (at least 16 rows), black with a thin bright top
    line, groups of bright 5 x 7 glyphs (magnification, voltage, detector, date) and a scale
    bar."""
    H, W = int(shape[0]), int(shape[1])
    rows = min(H, max(16, int(round(0.06 * H))))
    bar = np.zeros((rows, W))
    bar[0] = 0.6
    scale = max(1, (rows - 6) // 8)
    gh, gw = 7 * scale, 5 * scale
    top = (rows - gh) // 2 + 1
    col = 2 * scale + 2
    while col + gw < 0.75 * W:
        for _ in range(int(rng.integers(3, 9))):
            if col + gw >= 0.75 * W:
                break
            glyph = np.kron(rng.random((7, 5)) < 0.45, np.ones((scale, scale)))
            bar[top : top + gh, col : col + gw][glyph > 0] = 0.95
            col += gw + scale
        col += 4 * gw
    length = int(0.15 * W)
    c0 = W - length - 3 * scale - 2
    if c0 > 0.75 * W:
        bar[rows // 2 - scale : rows // 2 + scale + 1, c0 : c0 + length] = 0.95
    return bar


def jpeg_like(dn: np.ndarray, quality: int, full_scale: float) -> np.ndarray:
    """8 x 8 block DCT quantisation as a baseline JPEG encoder at ``quality`` (1-100) does it
    (the standard luminance table), on values in DN; returns float DN (not yet rounded)."""
    q = int(np.clip(quality, 1, 100))
    s = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    table = np.clip(np.floor((_JPEG_Q50 * s + 50.0) / 100.0), 1, 255)
    H, W = dn.shape
    ph, pw = (-H) % 8, (-W) % 8
    unit = full_scale / 255.0
    x = np.pad(dn / unit - 128.0, ((0, ph), (0, pw)), mode="edge")
    h8, w8 = x.shape[0] // 8, x.shape[1] // 8
    blocks = x.reshape(h8, 8, w8, 8).transpose(0, 2, 1, 3)
    coef = dctn(blocks, axes=(2, 3), norm="ortho")
    coef = np.round(coef / table) * table
    out = idctn(coef, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(x.shape)
    return (out[:H, :W] + 128.0) * unit
