"""Olivine diffusion anisotropy: the angles between a traverse and the crystal axes [100],
[010], [001] (checked, or derived from EBSD Euler angles and the traverse azimuth) and the
factor they give the [001] diffusivity (Dohmen & Chakraborty 2007).

References
----------
- Dohmen, R. & Chakraborty, S. (2007) Fe-Mg diffusion in olivine II: point defect chemistry,
  change of diffusion mechanisms and a model for calculation of diffusion coefficients in
  natural olivine. Phys. Chem. Minerals 34, 409-430, doi:10.1007/s00269-007-0158-6.
- Bunge, H.-J. (1982) Texture Analysis in Materials Science (the Euler angle convention).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._validation import ZonationInputError

#: D[001] / D[100] = D[001] / D[010] for olivine Fe-Mg (Dohmen & Chakraborty 2007).
OLIVINE_ANISOTROPY = 6.0


def check_angles(angles_deg, *, warn: bool = True) -> np.ndarray:
    """Three finite angles (degrees) between a traverse and olivine's [100], [010], [001].

    Raises :class:`ZonationInputError` for anything that is not three finite numbers, and
    warns (``warn=True``) when cos^2 alpha + cos^2 beta + cos^2 gamma is more than 0.02 from 1
    (the angles then do not describe one direction; they are used as given).
    """
    try:
        ang = np.asarray(angles_deg, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(
            f"angles_deg={angles_deg!r} is not numeric; give three angles in degrees between the "
            "traverse and olivine's [100], [010] and [001] axes, e.g. angles_deg=(90, 90, 0)."
        ) from exc
    if ang.size != 3 or not np.all(np.isfinite(ang)):
        raise ZonationInputError(
            f"angles_deg={angles_deg!r} must be three finite angles in degrees (alpha, beta, "
            "gamma) between the traverse and olivine's [100], [010] and [001] axes."
        )
    s = float(np.sum(np.cos(np.deg2rad(ang)) ** 2))
    if warn and abs(s - 1.0) > 0.02:
        warnings.warn(
            f"angles_deg={tuple(float(a) for a in ang)}: cos^2 alpha + cos^2 beta + cos^2 gamma "
            f"= {s:.3f}, not 1, so they do not describe one direction; they are used as given "
            "(D = D100 cos^2 alpha + D010 cos^2 beta + D001 cos^2 gamma). Check the EBSD angles, "
            "or derive them with euler_to_axis_angles.",
            UserWarning,
            stacklevel=3,
        )
    return ang


def anisotropy_factor(angles_deg, anisotropy: float = OLIVINE_ANISOTROPY) -> float:
    """D along a traverse divided by D[001]: ``(cos^2 a + cos^2 b) / 6 + cos^2 g``.

    D = D100 cos^2(alpha) + D010 cos^2(beta) + D001 cos^2(gamma) with D100 = D010 = D001 / 6
    (Dohmen & Chakraborty 2007). The angles are used as given (no normalisation), the way the
    published inversions use them; :func:`check_angles` warns when they do not describe one
    direction.

    Parameters
    ----------
    angles_deg : sequence of 3 floats
        Angles (degrees) between the traverse and [100], [010], [001].
    anisotropy : float
        D[001] / D[100] (= D[001] / D[010]); 6 for olivine Fe-Mg.

    Returns
    -------
    float
    """
    ang = check_angles(angles_deg, warn=False)
    cos2 = np.cos(np.deg2rad(ang)) ** 2
    return float((cos2[0] + cos2[1]) / anisotropy + cos2[2])


def euler_to_axis_angles(euler_deg, azimuth_deg: float) -> tuple[float, float, float]:
    """Angles between a traverse in the section plane and the crystal's a, b, c axes.

    The orientation is given as Bunge Euler angles (phi1, Phi, phi2) in degrees, the EBSD
    convention (rotations about Z, X', Z'' taking the sample frame onto the crystal frame).
    The rows of the Bunge matrix ``g`` are the crystal axes [100], [010], [001] (olivine's
    orthorhombic a, b, c) written in the sample frame. The traverse lies in the section plane
    (sample X-Y) at ``azimuth_deg`` from the sample X axis toward Y: v = (cos az, sin az, 0).
    The angle to axis i is ``arccos |g_i . v|``, folded into 0-90 degrees (a direction and its
    opposite diffuse alike).

    Parameters
    ----------
    euler_deg : sequence of 3 floats
        Bunge Euler angles phi1, Phi, phi2 (degrees), as exported by EBSD software in the
        sample frame of the map.
    azimuth_deg : float
        Direction of the traverse in the map, degrees from the sample X axis toward Y.

    Returns
    -------
    tuple of 3 floats
        Angles (degrees) to [100], [010], [001]; their cos^2 sum to 1.

    Examples
    --------
    >>> euler_to_axis_angles((0, 0, 0), 0)   # crystal axes on the sample axes, traverse along X
    (0.0, 90.0, 90.0)
    """
    try:
        e = np.deg2rad(np.asarray(euler_deg, dtype=float).ravel())
        az = math.radians(float(azimuth_deg))
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(
            f"euler_deg={euler_deg!r} / azimuth_deg={azimuth_deg!r}: give three Bunge Euler "
            "angles (phi1, Phi, phi2) in degrees and the traverse azimuth in degrees."
        ) from exc
    if e.size != 3 or not np.all(np.isfinite(e)) or not math.isfinite(az):
        raise ZonationInputError(
            f"euler_deg={euler_deg!r} must be three finite Bunge Euler angles (phi1, Phi, phi2) "
            "in degrees, and azimuth_deg a finite angle."
        )
    p1, pp, p2 = e
    c1, s1, c, s, c2, s2 = (math.cos(p1), math.sin(p1), math.cos(pp), math.sin(pp),
                            math.cos(p2), math.sin(p2))
    g = np.array(
        [
            [c1 * c2 - s1 * s2 * c, s1 * c2 + c1 * s2 * c, s2 * s],
            [-c1 * s2 - s1 * c2 * c, -s1 * s2 + c1 * c2 * c, c2 * s],
            [s1 * s, -c1 * s, c],
        ]
    )
    v = np.array([math.cos(az), math.sin(az), 0.0])
    cosines = np.clip(np.abs(g @ v), 0.0, 1.0)
    ang = np.degrees(np.arccos(cosines))
    return tuple(float(round(a, 10)) for a in ang)
