"""E(3) x permutation checks for layers (through their declared irreps) and whole potentials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from e3nn import o3

from gdlphys import keys


@dataclass(frozen=True)
class O3Element:
    """A rotation (Euler angles, exact in any dtype), optionally times the inversion -1."""

    alpha: float
    beta: float
    gamma: float
    reflect: bool

    @classmethod
    def random(cls, reflect: bool, generator: torch.Generator | None = None) -> "O3Element":
        u = torch.rand(3, dtype=torch.float64, generator=generator)
        # uniform on SO(3): alpha, gamma uniform, cos(beta) uniform
        return cls(float(2 * math.pi * u[0]), float(torch.arccos(1 - 2 * u[1])), float(2 * math.pi * u[2]), reflect)

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        angles = [torch.tensor(a, dtype=torch.float64) for a in (self.alpha, self.beta, self.gamma)]
        r = o3.angles_to_matrix(*angles)
        return (-r if self.reflect else r).to(dtype)

    def D(self, irreps: o3.Irreps, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Representation matrix of this element on ``irreps``, accurate to float64 round-off.

        e3nn's own Wigner D matrices are built from float32 generators (errors ~1e-7), too
        coarse for float64 checks; here D_l solves Y_l(R x) = D_l Y_l(x) on random points.
        """
        rotation = self.matrix(torch.float64) * (-1.0 if self.reflect else 1.0)  # the proper part
        blocks = []
        for mul, ir in o3.Irreps(irreps):
            points = torch.randn(8 * (2 * ir.l + 1), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(ir.l))
            y = o3.spherical_harmonics(ir.l, points, normalize=True, normalization="component")
            y_rotated = o3.spherical_harmonics(ir.l, points @ rotation.T, normalize=True, normalization="component")
            d_l = torch.linalg.lstsq(y, y_rotated).solution.T
            if self.reflect:
                d_l = d_l * ir.p
            blocks.extend([d_l] * mul)
        if not blocks:
            return torch.zeros(0, 0, dtype=dtype)
        return torch.block_diag(*blocks).to(dtype)


def random_orthogonal_matrix(reflect: bool, dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random rotation, times -1 (an improper rotation, i.e. with a reflection) when ``reflect``."""
    return O3Element.random(reflect, generator).matrix(dtype)


def _rotate_field(value: torch.Tensor, irreps: o3.Irreps, element: O3Element) -> torch.Tensor:
    return value @ element.D(irreps, value.dtype).T


def assert_layer_equivariant(
    layer: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    data: dict[str, torch.Tensor],
    irreps_in: Mapping[str, o3.Irreps],
    irreps_out: Mapping[str, o3.Irreps],
    element: O3Element,
    atol: float,
) -> None:
    """layer(g . data) == g . layer(data) for the O(3) ``element`` g.

    Positions and edge vectors rotate as vectors (x -> x R^T); every field named in
    ``irreps_in`` / ``irreps_out`` transforms with its irreps' Wigner D matrices
    (including the parity of improper rotations).
    """
    matrix = element.matrix(torch.float64)

    def transformed(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        d = dict(d)
        for key in (keys.POSITIONS, keys.EDGE_VECTORS):
            if key in d:
                d[key] = d[key] @ matrix.T.to(d[key].dtype)
        if keys.CELL in d:
            d[keys.CELL] = d[keys.CELL] @ matrix.T.to(d[keys.CELL].dtype)
        for key, irreps in irreps_in.items():
            d[key] = _rotate_field(d[key], o3.Irreps(irreps), element)
        return d

    out_then_rotate = layer(dict(data))
    rotate_then_out = layer(transformed(data))
    for key, irreps in irreps_out.items():
        expected = _rotate_field(out_then_rotate[key], o3.Irreps(irreps), element)
        error = (rotate_then_out[key] - expected).abs().max().item() if expected.numel() else 0.0
        assert error <= atol, f"{type(layer).__name__}: field {key!r} breaks equivariance by {error:.3g} (> {atol:.1g})"


def _permute(data: dict[str, torch.Tensor], perm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Renumber atoms: new atom k is old atom perm[k] (edges follow)."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm), device=perm.device)
    d = dict(data)
    for key in (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.BATCH):
        d[key] = data[key][perm]
    d[keys.EDGE_INDEX] = inverse[data[keys.EDGE_INDEX]]
    return d


def assert_potential_equivariant(
    potential: torch.nn.Module,
    data: dict[str, torch.Tensor],
    *,
    energy_atol: float,
    forces_atol: float,
    generator: torch.Generator | None = None,
) -> None:
    """Energy invariant, forces equivariant under a rotation, a reflection, a translation and a permutation.

    A potential with a dipole head is checked too: the dipole turns with every orthogonal
    matrix (a polar vector), is unchanged by translation (the charges are neutral) and by
    permutation. ``data`` is a batch whose atoms may be permuted only within their graph;
    permutations here act within each graph (sorted by batch), so batched graphs stay contiguous.
    """
    ref = potential(data, compute_forces=True)
    dtype = data[keys.POSITIONS].dtype

    def check(name: str, out: dict[str, torch.Tensor], expected_forces: torch.Tensor, matrix: torch.Tensor | None = None) -> None:
        de = (out[keys.ENERGY] - ref[keys.ENERGY]).abs().max().item()
        df = (out[keys.FORCES] - expected_forces).abs().max().item()
        assert de <= energy_atol, f"energy not invariant under {name}: changed by {de:.3g} eV (> {energy_atol:.1g})"
        assert df <= forces_atol, f"forces not equivariant under {name}: off by {df:.3g} eV/Å (> {forces_atol:.1g})"
        if keys.DIPOLE in ref:
            expected = ref[keys.DIPOLE] if matrix is None else ref[keys.DIPOLE] @ matrix.T
            dd = (out[keys.DIPOLE] - expected).abs().max().item()
            assert dd <= forces_atol, f"dipole not equivariant under {name}: off by {dd:.3g} e*Å (> {forces_atol:.1g})"

    for reflect in (False, True):
        matrix = random_orthogonal_matrix(reflect, dtype, generator)
        d = dict(data)
        d[keys.POSITIONS] = data[keys.POSITIONS] @ matrix.T
        d[keys.CELL] = data[keys.CELL] @ matrix.T
        name = "reflection" if reflect else "rotation"
        check(name, potential(d, compute_forces=True), ref[keys.FORCES] @ matrix.T, matrix)

    d = dict(data)
    shift = torch.randn(3, dtype=dtype, generator=generator).to(data[keys.POSITIONS].device) * 3.0
    d[keys.POSITIONS] = data[keys.POSITIONS] + shift
    check("translation", potential(d, compute_forces=True), ref[keys.FORCES])

    batch = data[keys.BATCH]
    n_graphs = int(data[keys.CELL].shape[0])
    perm = torch.cat([
        torch.nonzero(batch == g).flatten()[torch.randperm(int((batch == g).sum()), generator=generator)]
        for g in range(n_graphs)
    ]).to(batch.device)
    check("permutation", potential(_permute(data, perm), compute_forces=True), ref[keys.FORCES][perm])
