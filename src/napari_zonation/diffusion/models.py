"""Forward models: initial and boundary conditions of a diffusion profile, and the prediction
of the measured points (the solution blurred by the measurement's spatial resolution).

Models (parameter vectors in the profile's own value units and micrometres):

- :class:`PlateauModel` (``k`` steps): plateaus ``L_0`` (rim side) ... ``L_k`` (core side)
  joined by sharp steps at ``p_1 < ... < p_k``; one relaxation for reduced time ``tau``.
  ``k = 1`` is the one-step model of published olivine chronometry.
- :class:`TwoStageModel`: stage 1 relaxes a core (``C0``) / intermediate (``C1``) step at
  ``b1`` with the crystal's margin at that time, ``b2``, held at ``C1``, for ``tau1``; a new rim
  ``C2`` then replaces everything rimward of ``b2`` and both relax for ``tau2`` with the rim end
  held at ``C2``.
- :class:`GivenInitialModel`: any initial profile the user gives, relaxed for ``tau``.

Boundary set-up (:class:`Domain`): the modelled window runs from ``start`` (the rim end: the
first analysed point, or distance 0) to ``end`` (the last point); the rim end is ``"fixed"``
(held at the rim plateau: a melt in contact), ``"closed"`` (no flux) or ``"open"`` (no
boundary: the rim plateau extends outward, as in the error-function solution); the core end is
``"closed"`` or ``"fixed"``. Reduced times are ``tau = D_ref t`` with ``D_ref`` the diffusivity
at the reference value ``v_ref``; with composition-dependent D, ``D = D_ref exp(k (v - v_ref))``
at each node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .solver import cell_average_step, graded_grid, relax

#: Gauss-Hermite nodes and weights for the Gaussian blur (probability normalisation)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(9)
_GH_W = _GH_W / _GH_W.sum()


@dataclass
class Domain:
    """The modelled window and its boundary conditions."""

    start: float
    end: float
    rim: str = "fixed"  # fixed | closed | open
    core: str = "closed"  # closed | fixed
    extension: float = 0.0  # open rim: the window is extended outward by this much


@dataclass
class Physics:
    """How D varies: ``D / D_ref = exp(k_value * (v - v_ref))`` (k_value = 0: constant D)."""

    k_value: float = 0.0
    v_ref: float = 0.0
    n_steps: int = 60
    drift: np.ndarray | None = None  # per face of the grid (plagioclase), or None
    d_nodes: np.ndarray | None = None  # fixed D / D_ref per node (plagioclase), or None
    #: position-dependent D / D_ref and ln K (plagioclase: from the An profile), evaluated on
    #: the grid when it is known (:meth:`on_grid`)
    d_of_x: object = None
    lnk_of_x: object = None

    def on_grid(self, x: np.ndarray) -> Physics:
        """This physics with its position-dependent terms evaluated on the nodes ``x``."""
        if self.d_of_x is None and self.lnk_of_x is None:
            return self
        d_nodes = None if self.d_of_x is None else np.asarray(self.d_of_x(x), dtype=float)
        drift = None
        if self.lnk_of_x is not None:
            lnk = np.asarray(self.lnk_of_x(x), dtype=float)
            drift = np.diff(lnk) / np.diff(x)
        return Physics(self.k_value, self.v_ref, self.n_steps, drift, d_nodes)

    def d_rel(self):
        if self.d_nodes is not None:
            return self.d_nodes
        if self.k_value == 0.0:
            return None
        k, v0 = self.k_value, self.v_ref

        def f(c):
            return np.exp(np.clip(k * (c - v0), -30.0, 30.0))

        return f


@dataclass
class Grid:
    x: np.ndarray
    h_fine: float
    focus: tuple = ()


def make_grid(domain: Domain, focus, s_scale: float, *, resolution: float = 5.0) -> Grid:
    """A node grid over the (extended) window, ``s_scale / resolution`` apart near the focus
    points (steps and the rim), coarser farther away."""
    start = domain.start - domain.extension
    length = domain.end - start
    h_fine = max(s_scale / resolution, length / 3000.0)
    focus = tuple(float(f) for f in focus) + (domain.start,)
    x = graded_grid(start, domain.end, focus, h_fine, band=6.0 * s_scale, growth=0.1,
                    h_max=max(length / 40.0, h_fine))
    return Grid(x, h_fine, focus)


def blurred_at(x_nodes: np.ndarray, c_nodes: np.ndarray, d: np.ndarray, blur_sigma: float):
    """Node values interpolated at the points ``d``, convolved with a Gaussian of 1-sigma
    ``blur_sigma`` (nine-point Gauss-Hermite quadrature; values beyond the window are the end
    values)."""
    if blur_sigma <= 0:
        return np.interp(d, x_nodes, c_nodes)
    pts = d[:, None] + blur_sigma * _GH_X[None, :]
    return np.interp(pts, x_nodes, c_nodes) @ _GH_W


# --------------------------------------------------------------------------------------------
@dataclass
class PlateauModel:
    """Plateaus joined by ``n_steps`` sharp steps, relaxed for ``tau``.

    Parameters: ``[L_0, ..., L_k, p_1, ..., p_k, ln_tau]`` (rim-side level first).
    """

    n_steps: int = 1
    name: str = "step"

    def names(self) -> list[str]:
        k = self.n_steps
        return [f"level_{i}" for i in range(k + 1)] + [f"position_{i + 1}" for i in
                                                       range(k)] + ["ln_tau"]

    def split(self, theta):
        k = self.n_steps
        levels = np.asarray(theta[: k + 1], dtype=float)
        pos = np.asarray(theta[k + 1 : 2 * k + 1], dtype=float)
        return levels, pos, float(theta[-1])

    def initial(self, theta, grid: Grid, domain: Domain) -> np.ndarray:
        levels, pos, _ = self.split(theta)
        order = np.argsort(pos, kind="stable")
        return cell_average_step(grid.x, pos[order], np.concatenate(
            [[levels[0]], levels[1:][order]]))

    def final(self, theta, grid: Grid, domain: Domain, physics: Physics) -> np.ndarray:
        _, _, ln_tau = self.split(theta)
        physics = physics.on_grid(grid.x)
        c0 = self.initial(theta, grid, domain)
        tau = math.exp(min(ln_tau, 60.0))
        rim = "closed" if domain.rim == "open" else domain.rim
        levels = self.split(theta)[0]
        ends = self.end_factors(grid)
        return relax(grid.x, c0, tau, physics.d_rel(), rim=rim,
                     rim_value=float(levels[0] * ends[0]), core=domain.core,
                     core_value=float(levels[-1] * ends[1]), drift=physics.drift,
                     n_steps=physics.n_steps)

    def end_factors(self, grid: Grid) -> tuple[float, float]:
        return 1.0, 1.0

    def focus(self, theta) -> list[float]:
        return list(self.split(theta)[1])


@dataclass
class TwoStageModel:
    """Two-stage history (core/intermediate step, then a new rim).

    Parameters: ``[C0 (core), C1 (intermediate), C2 (new rim), b1 (core/intermediate step),
    b2 (stage-1 margin), ln_tau1, ln_tau2]``.
    """

    name: str = "two_stage"
    n_steps: int = 2

    def names(self) -> list[str]:
        return ["core", "intermediate", "rim", "position_1", "position_2", "ln_tau1", "ln_tau2"]

    def stage1(self, theta, grid: Grid, domain: Domain, physics: Physics):
        c0_, c1_, c2_, b1, b2, lt1, _ = (float(v) for v in theta)
        x = grid.x
        j = int(np.searchsorted(x, b2, side="right"))
        sub = x[j:]
        if sub.size and sub[0] - b2 < 0.25 * grid.h_fine:
            sub = sub[1:]
        xs = np.concatenate([[b2], sub])
        c_init = cell_average_step(xs, [b1], [c1_, c0_])
        d_rel = physics.d_rel()
        if d_rel is not None and not callable(d_rel):
            d_rel = np.interp(xs, x, d_rel)
        c1 = relax(xs, c_init, math.exp(min(lt1, 60.0)), d_rel, rim="fixed", rim_value=c1_,
                   core=domain.core, core_value=c0_, n_steps=physics.n_steps)
        return xs, c1

    def initial(self, theta, grid: Grid, domain: Domain) -> np.ndarray:
        c0_, c1_, c2_, b1, b2 = (float(v) for v in theta[:5])
        return cell_average_step(grid.x, [b2, b1], [c2_, c1_, c0_])

    def final(self, theta, grid: Grid, domain: Domain, physics: Physics) -> np.ndarray:
        c0_, c1_, c2_, b1, b2, lt1, lt2 = (float(v) for v in theta)
        xs, c1 = self.stage1(theta, grid, domain, physics)
        x = grid.x
        after1 = np.interp(x, xs, c1)
        rim_part = cell_average_step(x, [b2], [1.0, 0.0])  # fraction of each volume inside b2
        c_start = rim_part * c2_ + (1.0 - rim_part) * after1
        rim = "closed" if domain.rim == "open" else domain.rim
        return relax(x, c_start, math.exp(min(lt2, 60.0)), physics.d_rel(), rim=rim,
                     rim_value=c2_, core=domain.core, core_value=c0_, n_steps=physics.n_steps)

    def focus(self, theta) -> list[float]:
        return [float(theta[3]), float(theta[4])]


@dataclass
class GivenInitialModel:
    """A user-given initial profile ``(distance_um, value)`` relaxed for ``tau``; the rim end,
    when fixed, is held at the initial profile's first value. Parameters: ``[ln_tau]``."""

    distance_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    name: str = "initial"
    n_steps: int = 0

    def names(self) -> list[str]:
        return ["ln_tau"]

    def normalised(self, offset: float, scale: float) -> GivenInitialModel:
        """The same model with its values in the fit's normalised units."""
        return GivenInitialModel(self.distance_um, (self.value - offset) / scale, self.name)

    def initial(self, theta, grid: Grid, domain: Domain) -> np.ndarray:
        """The given profile (linear between its points) averaged over each node's control
        volume, so a sharp given step is represented where it is, whatever the grid."""
        x = grid.x
        mid = 0.5 * (x[1:] + x[:-1])
        lo = np.concatenate([[x[0]], mid])
        hi = np.concatenate([mid, [x[-1]]])
        fine = np.union1d(np.linspace(x[0], x[-1], 20001),
                          self.distance_um[(self.distance_um > x[0]) & (self.distance_um < x[-1])])
        vals = np.interp(fine, self.distance_um, self.value)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (vals[1:] + vals[:-1]) * np.diff(fine))])
        width = hi - lo
        avg = (np.interp(hi, fine, cum) - np.interp(lo, fine, cum)) / np.where(width > 0, width,
                                                                              1.0)
        return np.where(width > 0, avg, np.interp(x, self.distance_um, self.value))

    def final(self, theta, grid: Grid, domain: Domain, physics: Physics) -> np.ndarray:
        physics = physics.on_grid(grid.x)
        c0 = self.initial(theta, grid, domain)
        rim = "closed" if domain.rim == "open" else domain.rim
        return relax(grid.x, c0, math.exp(min(float(theta[-1]), 60.0)), physics.d_rel(),
                     rim=rim, rim_value=float(c0[0]), core=domain.core,
                     core_value=float(c0[-1]), drift=physics.drift, n_steps=physics.n_steps)

    def focus(self, theta) -> list[float]:
        jumps = np.abs(np.diff(self.value))
        if jumps.size == 0:
            return []
        idx = np.argsort(jumps)[::-1][:3]
        return [float(0.5 * (self.distance_um[i] + self.distance_um[i + 1])) for i in idx]


@dataclass
class PartitionedPlateauModel(PlateauModel):
    """Plateaus of the *melt* composition joined by steps: the crystal starts in equilibrium
    with a stepped melt, ``C0(x) = L(x) K(x) / K_ref`` with ``K`` the partition coefficient at
    each node (plagioclase: from its An), so the parameters ``L_j`` are crystal values at the
    reference An. ``k_ratio_of_x(x)`` gives ``K(x) / K_ref``."""

    k_ratio_of_x: object = None
    multiplicative: bool = True  # values are not shifted by the fit's normalisation

    def initial(self, theta, grid: Grid, domain: Domain) -> np.ndarray:
        base = super().initial(theta, grid, domain)
        return base * np.asarray(self.k_ratio_of_x(grid.x), dtype=float)

    def end_factors(self, grid: Grid) -> tuple[float, float]:
        kr = np.asarray(self.k_ratio_of_x(grid.x[[0, -1]]), dtype=float)
        return float(kr[0]), float(kr[1])


def predict(model, theta, grid: Grid, domain: Domain, physics: Physics, d: np.ndarray,
            blur_sigma: float) -> np.ndarray:
    """The model's values at the measured distances ``d``, blurred."""
    c = model.final(theta, grid, domain, physics)
    return blurred_at(grid.x, c, d, blur_sigma)
