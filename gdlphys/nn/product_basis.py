"""MACE-style many-body interaction: the atomic basis A_i of a convolution, raised to a
symmetric product basis B_i of correlation order nu, with element-dependent weights.

B_i couples, channel by channel, the symmetric powers A_i^(x k) (k = 1..nu) to each target
irrep; a linear map then mixes channels. With nu = 3 an atom's features depend on up to
three neighbours at once (four-body), where a tensor-product convolution sees one at a time.

The coupling coefficients are built here in float64 from e3nn's Clebsch-Gordan (Wigner 3j)
symbols: couple the irreps of one multiset of A's blocks in a chain, keep the paths that
end in a target irrep, write each as coefficients of the distinct monomials of A's
components (what a symmetric product can see), and orthonormalise the paths of each
target irrep (dropping the linearly dependent ones). Cost and weights grow linearly in
the number of channels, as every channel is coupled only with itself.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from e3nn import o3
from torch import nn

from gdlphys.nn.interaction import Interaction
from gdlphys.nn.scatter import gather_rows
from gdlphys.nn.species import SpeciesDependent, grow_rows, row_masks

_DEPENDENT = 1e-9  # eigenvalue (relative to a coupling's own norm) below which a path is a combination of the others


def _chain_couplings(irs: tuple[o3.Irrep, ...], multiset: tuple[int, ...], targets: frozenset[o3.Irrep]):
    """(ir_out, tensor [ir_out.dim, d_i1, ..., d_ik]) for every chain ((i1 x i2) x i3) ... -> ir_out in ``targets``."""
    first = irs[multiset[0]]
    partial = [(first, torch.eye(first.dim, dtype=torch.float64))]
    for index in multiset[1:]:
        ir = irs[index]
        coupled = []
        for ir_left, tensor in partial:
            for ir_out in ir_left * ir:
                w3j = o3.wigner_3j(ir_left.l, ir.l, ir_out.l, dtype=torch.float64)  # [left, ir, out]
                coupled.append((ir_out, torch.einsum("m...,mbn->n...b", tensor, w3j)))
        partial = coupled
    return [(ir_out, tensor) for ir_out, tensor in partial if ir_out in targets]


@functools.lru_cache(maxsize=32)
def _symmetric_basis(irreps_channel: str, irreps_target: str, order: int):
    """Coupling of the degree-``order`` monomials of one channel's components into the target irreps.

    Returns (monomials [n_monomials, order] component indices, sorted; {ir: coefficients
    [n_paths, ir.dim, n_monomials]}), float64, each path orthonormal to the others of its irrep
    in the Frobenius norm of the symmetric tensor it stands for, scaled to norm sqrt(ir.dim).
    """
    irs = tuple(ir for _, ir in o3.Irreps(irreps_channel))
    targets = frozenset(ir for _, ir in o3.Irreps(irreps_target))
    offsets = [0, *itertools.accumulate(ir.dim for ir in irs)]
    dim = offsets[-1]
    monomials = torch.tensor(list(itertools.combinations_with_replacement(range(dim), order)), dtype=torch.long)
    column = torch.full((dim**order,), -1, dtype=torch.long)
    column[(monomials * dim ** torch.arange(order - 1, -1, -1)).sum(1)] = torch.arange(len(monomials))
    # a monomial stands for count = order! / prod(repeats!) entries of the symmetric tensor
    counts = torch.tensor(
        [math.factorial(order) / math.prod(math.factorial(len(list(g))) for _, g in itertools.groupby(m)) for m in monomials.tolist()],
        dtype=torch.float64,
    )
    paths: dict[o3.Irrep, list[torch.Tensor]] = {}
    scale: dict[o3.Irrep, float] = {}  # largest squared norm of a coupling before symmetrisation
    for multiset in itertools.combinations_with_replacement(range(len(irs)), order):
        grids = torch.meshgrid(*[torch.arange(offsets[i], offsets[i + 1]) for i in multiset], indexing="ij")
        entries = torch.stack([g.reshape(-1) for g in grids], dim=1).sort(dim=1).values
        cols = column[(entries * dim ** torch.arange(order - 1, -1, -1)).sum(1)]
        for ir, tensor in _chain_couplings(irs, multiset, targets):
            coefficients = torch.zeros(ir.dim, len(monomials), dtype=torch.float64)
            coefficients.index_add_(1, cols, tensor.reshape(ir.dim, -1))  # sums the permutations of equal blocks
            paths.setdefault(ir, []).append(coefficients)
            scale[ir] = max(scale.get(ir, 0.0), float(tensor.pow(2).sum()))
    basis = {}
    for ir, found in paths.items():
        stacked = torch.stack(found)
        gram = torch.einsum("pkt,qkt,t->pq", stacked, stacked, 1.0 / counts)
        values, vectors = torch.linalg.eigh(gram)
        # relative to the couplings, not to the largest eigenvalue: a symmetric product can kill every
        # path of an irrep (1o x 1o x 1o -> 0o is antisymmetric), leaving only round-off
        keep = values > _DEPENDENT * scale[ir]
        if keep.any():
            combos = vectors[:, keep] / values[keep].sqrt()
            basis[ir] = math.sqrt(ir.dim) * torch.einsum("pq,pkt->qkt", combos, stacked)
    return monomials, basis


class SymmetricProduct(SpeciesDependent):
    """B_c = sum_{k<=nu} sum_paths W[Z, path, c] * Path(A_c^(x k)) for each channel c and target irrep.

    ``irreps_in``: C copies of each of its irreps (C channels; e.g. ``8x0e + 8x1o + 8x2e``).
    ``irreps_out``: the irreps of ``irreps_target`` that some power reaches, C copies each.
    The weights (one tensor [num_species, n_paths, C] per output irrep, in ``weights``) depend
    on the element through the one-hot ``attrs``.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_target: o3.Irreps, num_species: int, correlation: int) -> None:
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        self.irreps_in = o3.Irreps(irreps_in)
        muls = {mul for mul, _ in self.irreps_in}
        irs = [ir for _, ir in self.irreps_in]
        if len(muls) != 1 or len(set(irs)) != len(irs):
            raise ValueError(f"the product basis needs the same multiplicity of distinct irreps, got {self.irreps_in}")
        self.channels = muls.pop()
        self.correlation = int(correlation)
        channel = str(o3.Irreps([(1, ir) for ir in irs]))
        target = str(o3.Irreps([(1, ir) for _, ir in o3.Irreps(irreps_target)]).simplify())

        parents, lasts, blocks = [], [], []
        for order in range(1, correlation + 1):
            monomials, basis = _symmetric_basis(channel, target, order)
            if order > 1:  # each monomial = a monomial of one degree less times one component
                previous = {tuple(m): k for k, m in enumerate(_symmetric_basis(channel, target, order - 1)[0].tolist())}
                parents.append(torch.tensor([previous[tuple(m[:-1])] for m in monomials.tolist()]))
                lasts.append(monomials[:, -1].clone())
            blocks.append(basis)
        reached = [ir for _, ir in o3.Irreps(irreps_target) if any(ir in b for b in blocks)]
        self.irreps_out = o3.Irreps([(self.channels, ir) for ir in reached])

        n_monomials = [len(_symmetric_basis(channel, target, k)[0]) for k in range(1, correlation + 1)]
        columns, self.num_paths, path_of_column, component_of_column = [], [], [], []
        for ir_index, ir in enumerate(reached):
            per_order = [
                b[ir] if ir in b else torch.zeros(0, ir.dim, n, dtype=torch.float64) for b, n in zip(blocks, n_monomials)
            ]
            # [n_paths_total, ir.dim, sum(n_monomials)]: the paths of each order see only its monomials
            rows = [torch.nn.functional.pad(p, (sum(n_monomials[:k]), sum(n_monomials[k + 1 :]))) for k, p in enumerate(per_order)]
            paths = torch.cat(rows)
            first_component = sum(r.dim for r in reached[:ir_index])
            path_of_column += [sum(self.num_paths) + p for p in range(len(paths)) for _ in range(ir.dim)]
            component_of_column += [first_component + m for _ in range(len(paths)) for m in range(ir.dim)]
            self.num_paths.append(len(paths))
            columns.append(paths.reshape(-1, paths.shape[-1]).T)
        # float64 master copy; the buffer follows the module's dtype (see _apply)
        self._coupling64 = torch.cat(columns, dim=1).T.contiguous()  # [n_columns, n_monomials]
        self.register_buffer("coupling", self._coupling64.to(torch.get_default_dtype()), persistent=False)
        summation = torch.zeros(sum(ir.dim for ir in reached), len(path_of_column))
        summation[component_of_column, torch.arange(len(path_of_column))] = 1.0  # columns -> output components
        self.register_buffer("summation", summation, persistent=False)
        self.register_buffer("path_of_column", torch.tensor(path_of_column), persistent=False)
        for k, (parent, last) in enumerate(zip(parents, lasts)):
            self.register_buffer(f"parent_{k + 2}", parent, persistent=False)
            self.register_buffer(f"last_{k + 2}", last, persistent=False)
        # plain ints for forward: torch.compile cannot guard on e3nn's Irrep objects
        self._in_blocks = [(sl.start, sl.stop, ir.dim) for sl, (_, ir) in zip(self.irreps_in.slices(), self.irreps_in)]
        self._out_dims = [ir.dim for _, ir in self.irreps_out]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(num_species, n, self.channels) / math.sqrt(n)) for n in self.num_paths]
        )

    def _apply(self, fn, recurse=True):
        # the coupling is rebuilt from float64, not converted from float32: float64 models stay exactly equivariant
        super()._apply(fn, recurse)
        self.coupling = self._coupling64.to(dtype=self.coupling.dtype, device=self.coupling.device)
        return self

    def grown_state(self, grown: SymmetricProduct, n_old: int, mix: torch.Tensor) -> dict[str, torch.Tensor]:
        # indexed by the one-hot without a fan-in factor: old rows are copied as they are
        return {f"weights.{k}": grow_rows(weight, mix) for k, weight in enumerate(self.weights)}

    def species_masks(self, species) -> dict[str, torch.Tensor]:
        return {f"weights.{k}": row_masks(weight, species) for k, weight in enumerate(self.weights)}

    def forward(self, features: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        # Component-major layout [component, atom * channel]: every gather below copies whole
        # contiguous rows, several times faster (and its backward too) than indexing a last dim.
        n, c = features.shape[0], self.channels
        a = torch.cat(
            [features[:, start:stop].reshape(n, c, dim).permute(2, 0, 1).reshape(dim, n * c)
             for start, stop, dim in self._in_blocks]
        )
        monomials, power = [a], a
        for k in range(2, self.correlation + 1):
            power = gather_rows(power, getattr(self, f"parent_{k}")) * gather_rows(a, getattr(self, f"last_{k}"))
            monomials.append(power)
        coupled = self.coupling @ torch.cat(monomials)  # [n_columns = sum_ir n_paths * ir.dim, n * c]
        weights = torch.cat(list(self.weights), dim=1)  # [n_species, n_paths, c]
        per_atom = torch.einsum("ns,spc->pnc", attrs, weights).reshape(-1, n * c)  # the element's weights
        out = self.summation @ (coupled * gather_rows(per_atom, self.path_of_column))  # [sum_ir ir.dim, n * c]
        blocks, start = [], 0
        for dim in self._out_dims:
            blocks.append(out[start : start + dim].reshape(dim, n, c).permute(1, 2, 0).reshape(n, c * dim))
            start += dim
        return torch.cat(blocks, dim=-1)


class ProductInteraction(Interaction):
    """MACE-style layer: the NequIP convolution gives A_i, a symmetric product basis of
    correlation order nu replaces the gate.

    A_i = Linear(m_i);  h_i' = Linear(B(A_i, Z_i)) + SelfConnection(h_i, onehot(Z_i))  (+ h_i when irreps match)
    """

    def __init__(self, *args, correlation: int = 3, **kwargs) -> None:
        super().__init__(*args, correlation=correlation, **kwargs)

    def _init_update(self, irreps_mid: o3.Irreps, irreps_target: o3.Irreps, num_species: int, correlation: int = 3) -> o3.Irreps:
        reachable = {ir for _, ir in irreps_mid}
        irreps_atomic = o3.Irreps([(mul, ir) for mul, ir in irreps_target if ir in reachable])
        self.linear_out = o3.Linear(irreps_mid, irreps_atomic)
        self.product = SymmetricProduct(irreps_atomic, irreps_target, num_species, correlation)
        self.linear_product = o3.Linear(self.product.irreps_out, self.product.irreps_out)
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.product.irreps_out
        )
        return self.product.irreps_out

    def update(self, pooled: torch.Tensor, features: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        basis = self.product(self.linear_out(pooled), attrs)
        return self.linear_product(basis) + self.self_connection(features, attrs)
