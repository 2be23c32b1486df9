"""NequIP-style interaction: tensor-product convolution weighted by a radial MLP,
neighbour sum, species-dependent self-connection, gated nonlinearity, residual."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from gdlphys import keys
from gdlphys.nn.edge_chunks import check_edge_chunk, chunk_size, map_rows, rows_per_chunk, sum_messages
from gdlphys.nn.scatter import gather_rows
from gdlphys.nn.species import SpeciesDependent, grow_species_product, species_product_masks
from gdlphys.nn.tensor_product import EdgeTensorProduct

_SCALAR_ACTS = {1: nn.functional.silu, -1: torch.tanh}  # by parity: odd scalars need odd functions
_GATE_ACTS = {1: torch.sigmoid, -1: torch.tanh}


def _gate_for(irreps_reachable: o3.Irreps, irreps_target: o3.Irreps) -> Gate:
    """Gate whose output is the part of ``irreps_target`` that the convolution can reach."""
    reachable = {ir for _, ir in irreps_reachable}
    out = o3.Irreps([(mul, ir) for mul, ir in irreps_target if ir in reachable])
    scalars = o3.Irreps([(mul, ir) for mul, ir in out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in out if ir.l > 0])
    gate_ir = o3.Irrep("0e") if o3.Irrep("0e") in reachable else o3.Irrep("0o")
    gates = o3.Irreps([(mul, gate_ir) for mul, _ in gated])
    return Gate(
        scalars,
        [_SCALAR_ACTS[ir.p] for _, ir in scalars],
        gates,
        [_GATE_ACTS[gate_ir.p] for _ in gates],
        gated,
    )


def _convolution_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """'uvu' paths from (features x Y) into every irrep of the target (NequIP's instruction set)."""
    targets = {ir for _, ir in irreps_target}
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_edge) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_edge:
                if ir_out in targets:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    mid = o3.Irreps(mid)
    mid_sorted, perm, _ = mid.sort()
    instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
    return mid_sorted, instructions


class Interaction(SpeciesDependent):
    """One message-passing layer on NODE_FEATURES.

    m_i = 1/norm * sum_j TP(h_j, Y(r_ij); w = MLP(radial(r_ij)))  (equivariant convolution)
    h_i' = Gate(Linear(m_i) + SelfConnection(h_i, onehot(Z_i)))  (+ h_i when irreps match)

    Subclasses keep the convolution and replace the update of h_i from m_i by overriding
    ``_init_update`` (given ``update_options``) and ``update``.

    ``edge_chunk`` (a run-time setting, not saved with the weights): sum the messages over
    that many edges at a time, recomputing them in the backward pass (``gdlphys.nn.edge_chunks``);
    None: automatic (at inference on large graphs), 0: never. Results do not depend on it.
    """

    edge_chunk: int | None

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_target: o3.Irreps,
        num_species: int,
        num_basis: int,
        avg_num_neighbors: float,
        radial_hidden: int = 64,
        radial_layers: int = 2,
        neighbor_norm: str = "sqrt",
        **update_options,
    ) -> None:
        super().__init__()
        if neighbor_norm not in ("sqrt", "mean"):
            raise ValueError(f"neighbor_norm must be 'sqrt' or 'mean', got {neighbor_norm!r}")
        if avg_num_neighbors <= 0:
            raise ValueError(f"avg_num_neighbors must be positive, got {avg_num_neighbors}")
        self.irreps_in = o3.Irreps(irreps_in)
        irreps_sh = o3.Irreps(irreps_sh)
        self.norm = math.sqrt(avg_num_neighbors) if neighbor_norm == "sqrt" else float(avg_num_neighbors)

        irreps_mid, instructions = _convolution_irreps(self.irreps_in, irreps_sh, o3.Irreps(irreps_target))
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in, irreps_sh, irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        # the same product, grouped by input irrep (gdlphys.nn.tensor_product); self.tp keeps the saved state
        self.edge_product = EdgeTensorProduct(self.tp) if EdgeTensorProduct.supports(self.tp) else None
        self.radial = FullyConnectedNet(
            [num_basis] + [radial_hidden] * radial_layers + [self.tp.weight_numel], nn.functional.silu
        )
        self.irreps_out = self._init_update(irreps_mid, o3.Irreps(irreps_target), int(num_species), **update_options)
        self.residual = self.irreps_in == self.irreps_out
        self.edge_chunk = None

    def _init_update(self, irreps_mid: o3.Irreps, irreps_target: o3.Irreps, num_species: int) -> o3.Irreps:
        """Build the modules of ``update``; return the irreps it writes."""
        self.gate = _gate_for(irreps_mid, irreps_target)
        self.linear_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        # Per-species linear map: lets each element keep its own "memory" of its features.
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.gate.irreps_in
        )
        return self.gate.irreps_out

    def grown_state(self, grown: Interaction, n_old: int, mix: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-species self-connection (every update has one; the product basis owns its own rows)."""
        return {"self_connection.weight": grow_species_product(self.self_connection, grown.self_connection, n_old, mix)}

    def species_masks(self, species) -> dict[str, torch.Tensor]:
        return {"self_connection.weight": species_product_masks(self.self_connection, species)}

    def convolve(self, data: dict[str, torch.Tensor], chunk: int = 0) -> torch.Tensor:
        """m_i: the normalised neighbour sum of tensor-product messages (irreps ``tp.irreps_out``),
        ``chunk`` edges at a time (0: one pass)."""
        features = data[keys.NODE_FEATURES]
        src, dst = data[keys.EDGE_INDEX]
        h = self.linear_in(features)
        product = self.tp if self.edge_product is None else self.edge_product

        def messages(src: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
            return product(gather_rows(h, src), sh, self.radial(radial))

        edge_inputs = (src, data[keys.EDGE_SH], data[keys.EDGE_RADIAL])
        return sum_messages(messages, edge_inputs, dst, features.shape[0], chunk) / self.norm

    def update(self, pooled: torch.Tensor, features: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """New features (``irreps_out``) from the pooled messages, the old features and the one-hot species."""
        return self.gate(self.linear_out(pooled) + self.self_connection(features, attrs))

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = data[keys.NODE_FEATURES]
        n_edges = data[keys.EDGE_INDEX].shape[1]
        chunk = chunk_size(check_edge_chunk(self.edge_chunk), n_edges, self.training)
        pooled = self.convolve(data, chunk)
        # the update is per atom: chunked with the edges, else a product basis keeps ~100 kB an atom
        node_inputs = (pooled, features, data[keys.NODE_ATTRS])
        updated = map_rows(self.update, node_inputs, rows_per_chunk(chunk, features.shape[0], n_edges))
        data[keys.NODE_FEATURES] = features + updated if self.residual else updated
        return data
