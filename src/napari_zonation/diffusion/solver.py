"""A 1D finite-volume diffusion solver with composition-dependent D, and its grids.

Solves, on nodes ``x_0 < ... < x_{N-1}`` (any spacing; vertex-centred control volumes),

    dc/dt = d/dx ( D(c) dc/dx  -  D(c) c g(x) )

where ``D = D_ref * d_rel(c)`` (or a fixed array of D per node) and ``g`` is an optional
drift term: ``g = A / (R T) dX_An/dx`` gives the Costa et al. (2003) form of Fick's second law
for trace elements in plagioclase (``A`` the slope of RT ln K against X_An). Time runs in reduced
units ``tau = D_ref * t`` (um^2). Time steps are Crank-Nicolson after two backward-Euler
steps (which damp the discontinuity of an initial step), on a grid refined at the start
(``t_k = tau (k / n)^2``). A non-linear D is evaluated at the mid-step composition extrapolated
from the two previous steps (second order, one linear solve per step).

Boundaries: the rim end (``x_0``) ``"fixed"`` (held at ``rim_value``: a melt in contact) or
``"closed"`` (no flux); the core end (``x_{N-1}``) ``"closed"`` or ``"fixed"`` (at
``core_value``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_banded


def graded_grid(
    start: float,
    end: float,
    focus,
    h_fine: float,
    *,
    band: float = 0.0,
    growth: float = 0.12,
    h_max: float | None = None,
    max_nodes: int = 4000,
) -> np.ndarray:
    """Nodes from ``start`` to ``end``, ``h_fine`` apart within ``band`` of the focus points,
    growing by ``growth`` per node farther out, at most ``h_max`` apart.

    The grid is shifted so that both ends are nodes; ``h_fine`` is enlarged when the nodes would
    exceed ``max_nodes``.
    """
    length = float(end) - float(start)
    if length <= 0:
        raise ValueError("the grid needs end > start")
    focus = np.atleast_1d(np.asarray(focus, dtype=float))
    focus = focus[np.isfinite(focus)]
    h_max = length / 20.0 if h_max is None else float(h_max)
    h_fine = float(min(max(h_fine, length / max_nodes), h_max))
    for _ in range(8):
        xs = [float(start)]
        x = float(start)
        while x < end:
            dist = np.min(np.abs(focus - x)) if focus.size else 0.0
            h = min(h_max, h_fine + growth * max(0.0, dist - band))
            x += h
            xs.append(x)
            if len(xs) > max_nodes:
                break
        if len(xs) <= max_nodes:
            break
        h_fine *= 1.6
    xs = np.asarray(xs)
    # stretch the last partial step away: scale onto [start, end]
    xs = start + (xs - xs[0]) * (length / (xs[-1] - xs[0]))
    return xs


def control_volumes(x: np.ndarray) -> np.ndarray:
    """Vertex-centred control-volume lengths (half cells at the ends)."""
    h = np.diff(x)
    vol = np.empty(x.size)
    vol[0] = 0.5 * h[0]
    vol[-1] = 0.5 * h[-1]
    vol[1:-1] = 0.5 * (h[1:] + h[:-1])
    return vol


def cell_average_step(x: np.ndarray, positions, levels) -> np.ndarray:
    """Node values of a piecewise-constant profile: ``levels[0]`` before ``positions[0]``,
    ``levels[k]`` between ``positions[k-1]`` and ``positions[k]``, averaged over each node's
    control volume (so the values move smoothly with the step positions)."""
    x = np.asarray(x, dtype=float)
    mid = 0.5 * (x[1:] + x[:-1])
    lo = np.concatenate([[x[0]], mid])
    hi = np.concatenate([mid, [x[-1]]])
    width = hi - lo
    levels = np.asarray(levels, dtype=float)
    positions = np.asarray(positions, dtype=float)
    c = np.full(x.size, levels[-1])
    # c = levels[-1] + sum_k (levels[k] - levels[k+1]) * fraction of the volume below p_k
    for k, p in enumerate(positions):
        frac = np.clip((p - lo) / np.where(width > 0, width, 1.0), 0.0, 1.0)
        frac = np.where(width > 0, frac, (x < p).astype(float))
        c = c + (levels[k] - levels[k + 1]) * frac
    return c


def relax(
    x: np.ndarray,
    c0: np.ndarray,
    tau: float,
    d_rel: Callable[[np.ndarray], np.ndarray] | np.ndarray | None = None,
    *,
    rim: str = "fixed",
    rim_value: float | None = None,
    core: str = "closed",
    core_value: float | None = None,
    drift: np.ndarray | None = None,
    n_steps: int = 80,
) -> np.ndarray:
    """Diffuse node values ``c0`` for a reduced time ``tau = D_ref t`` (um^2).

    Parameters
    ----------
    x : numpy.ndarray
        Increasing node positions (um).
    c0 : numpy.ndarray
        Initial node values.
    tau : float
        Reduced time D_ref * t in um^2 (0: no change).
    d_rel : callable, array or None
        D / D_ref: a function of the node values (non-linear D), a fixed array per node, or None
        (constant D).
    rim, core : str
        ``"fixed"`` or ``"closed"`` at ``x[0]`` and ``x[-1]``.
    rim_value, core_value : float, optional
        Values held at a fixed end (default: the initial end values).
    drift : numpy.ndarray, optional
        ``g`` at the N - 1 faces (the Costa et al. 2003 term ``A / (R T) dX_An/dx``).
    n_steps : int
        Time steps.

    Returns
    -------
    numpy.ndarray
        Node values after ``tau``.
    """
    x = np.asarray(x, dtype=float)
    c = np.asarray(c0, dtype=float).copy()
    n = x.size
    if tau <= 0 or n < 3:
        return c
    h = np.diff(x)
    vol = control_volumes(x)
    rim_v = c[0] if rim_value is None else float(rim_value)
    core_v = c[-1] if core_value is None else float(core_value)
    if rim == "fixed":
        c[0] = rim_v
    if core == "fixed":
        c[-1] = core_v
    fixed_d = None
    if d_rel is None:
        fixed_d = np.ones(n)
    elif not callable(d_rel):
        fixed_d = np.asarray(d_rel, dtype=float)
    times = tau * (np.arange(n_steps + 1) / n_steps) ** 2
    c_prev = c.copy()
    dt_prev = 0.0
    ab = np.zeros((3, n))
    for k in range(n_steps):
        dt = times[k + 1] - times[k]
        theta = 1.0 if k < 2 else 0.5
        if fixed_d is not None:
            dn = fixed_d
        else:
            if k == 0 or dt_prev <= 0:
                c_mid = c
            else:  # extrapolate to the middle of this step
                c_mid = c + (0.5 * dt / dt_prev) * (c - c_prev) if theta == 0.5 else c + (
                    dt / dt_prev) * (c - c_prev)
            dn = np.asarray(d_rel(c_mid), dtype=float)
        d_face = 0.5 * (dn[1:] + dn[:-1])
        kf = d_face / h
        mf = 0.0 if drift is None else 0.5 * d_face * drift
        up = kf - mf  # coefficient of c[i+1] in the flux of face i
        lo = kf + mf  # coefficient of -c[i] in the flux of face i
        # M c: row i gets +Q_{i+1/2} - Q_{i-1/2}
        diag = np.zeros(n)
        diag[:-1] -= lo
        diag[1:] -= up
        sup = up  # M[i, i+1]
        sub = lo  # M[i+1, i]
        mc = diag * c
        mc[:-1] += sup * c[1:]
        mc[1:] += sub * c[:-1]
        rhs = vol / dt * c + (1.0 - theta) * mc
        ab[0, 1:] = -theta * sup
        ab[1, :] = vol / dt - theta * diag
        ab[2, :-1] = -theta * sub
        if rim == "fixed":
            ab[1, 0] = 1.0
            ab[0, 1] = 0.0
            rhs[0] = rim_v
        if core == "fixed":
            ab[1, -1] = 1.0
            ab[2, -2] = 0.0
            rhs[-1] = core_v
        c_prev = c
        c = solve_banded((1, 1), ab, rhs, check_finite=False)
        dt_prev = dt
    return c
