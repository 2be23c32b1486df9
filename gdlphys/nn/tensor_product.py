"""The convolution's tensor product, grouped by input irrep: the same function as e3nn's
``o3.TensorProduct`` for the 'uvu' paths of ``gdlphys.nn.interaction`` (features x spherical
harmonics, per-edge weights), in a few large operations instead of several small ones a path.

Above ~100 atoms the edge tensor product is most of an MD step (docs/benchmarks.md, "Where an MD
step's time goes"). e3nn's generated code slices the features, the harmonics and the weights once
per path, and the backward pass of every slice fills a zero tensor of the whole input and copies
its part in: zeroing and copying, not arithmetic, took a sixth of a 1,344-atom step. Here, for an
input irrep x (multiplicity u, dimension d1) and all its paths p to outputs of dimension d3(p):

    A = Y @ C                      one matmul: the Clebsch-Gordan coefficients of every path of x,
                                   times e3nn's path weight, against the harmonics -> (E, d1, sum d3)
    y = bmm(x, A)                  one batched product over the edges -> (E, u, sum d3)
    out_p = y_p * w_p              each path's part times its per-edge weights, already in e3nn's
                                   output layout (u-major); a scalar x (d1 = 1) skips the bmm:
                                   out_p = (x * w_p) outer A_p

and the outputs of all paths are joined by one ``torch.cat`` in e3nn's output order. Inputs are
split with ``torch.split`` (its backward joins the gradients, no zero-filled copies). The result
equals e3nn's to rounding (``tests/test_tensor_product.py``), so potentials trained with either
load and run with either. The e3nn module stays the owner of the irreps, the weight count and the
saved state; this one holds only constants derived from it (not saved), rebuilt from float64 in
whatever dtype the potential takes (e3nn rounds its own to the default dtype when built).
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import Tensor, nn


class EdgeTensorProduct(nn.Module):
    """``tp(x1, x2, weight)`` of an e3nn ``o3.TensorProduct`` that :meth:`supports` accepts."""

    @staticmethod
    def supports(tp: o3.TensorProduct) -> bool:
        """'uvu' paths with per-edge (not shared, not internal) weights, a second input of
        multiplicity 1 per irrep, every output irrep written by exactly one path, and the
        weights laid out input irrep by input irrep (as ``Interaction`` builds them)."""
        if tp.shared_weights or tp.internal_weights or any(mul != 1 for mul, _ in tp.irreps_in2):
            return False
        instructions = tp.instructions
        if not all(ins.connection_mode == "uvu" and ins.has_weight for ins in instructions):
            return False
        if sorted(ins.i_out for ins in instructions) != list(range(len(tp.irreps_out))):
            return False
        return [ins.i_in1 for ins in instructions] == sorted(ins.i_in1 for ins in instructions)

    def __init__(self, tp: o3.TensorProduct) -> None:
        super().__init__()
        if not self.supports(tp):
            raise ValueError(f"EdgeTensorProduct does not compute this tensor product: {tp}")
        irreps_in1, irreps_in2 = tp.irreps_in1, tp.irreps_in2
        self.in1_sizes = [mul * ir.dim for mul, ir in irreps_in1]
        self.out_slots = len(tp.irreps_out)
        self.groups: list[tuple[int, int, list[int], list[int]]] = []  # (multiplicity, d1, d3 per path, output slot per path)
        self.weight_sizes: list[int] = []
        self._coefficients64: list[Tensor] = []  # float64 masters; the buffers follow the module's dtype (_apply)
        for i, (mul, ir1) in enumerate(irreps_in1):
            paths = [ins for ins in tp.instructions if ins.i_in1 == i]
            coefficients = []
            for ins in paths:
                ir2, ir3 = irreps_in2[ins.i_in2].ir, tp.irreps_out[ins.i_out].ir
                block = torch.zeros(ir1.dim, irreps_in2.dim, ir3.dim, dtype=torch.float64)
                block[:, irreps_in2.slices()[ins.i_in2], :] = ins.path_weight * o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64)
                coefficients.append(block)
            d3s = [tp.irreps_out[ins.i_out].ir.dim for ins in paths]
            if coefficients:  # (d1, dim x2, sum d3) -> (dim x2, d1 * sum d3): A = x2 @ C
                c = torch.cat(coefficients, dim=2).permute(1, 0, 2).reshape(irreps_in2.dim, -1)
            else:
                c = torch.zeros(irreps_in2.dim, 0, dtype=torch.float64)
            self._coefficients64.append(c)
            self.register_buffer(f"coefficients_{i}", c.to(torch.get_default_dtype()), persistent=False)
            self.groups.append((mul, ir1.dim, d3s, [ins.i_out for ins in paths]))
            self.weight_sizes.append(sum(ins.path_shape[0] * ins.path_shape[1] for ins in paths))

    def _apply(self, fn, recurse=True):
        # as SymmetricProduct's coupling: rebuilt from float64, not converted from float32, so a
        # float32 potential run in float64 stays exactly equivariant
        super()._apply(fn, recurse)
        for i, master in enumerate(self._coefficients64):
            buffer = getattr(self, f"coefficients_{i}")
            setattr(self, f"coefficients_{i}", master.to(dtype=buffer.dtype, device=buffer.device))
        return self

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor) -> Tensor:
        n = x1.shape[0]
        outputs: list[Tensor | None] = [None] * self.out_slots
        parts = zip(x1.split(self.in1_sizes, dim=1), weight.split(self.weight_sizes, dim=1), self.groups)
        for i, (x, w, (mul, d1, d3s, slots)) in enumerate(parts):
            if not slots:
                continue
            a = (x2 @ getattr(self, f"coefficients_{i}")).view(n, d1, sum(d3s))
            path_weights = w.view(n, len(slots), mul).unbind(1)
            if d1 == 1:  # a scalar input: the product is an outer product, no bmm
                for slot, a_p, w_p in zip(slots, a.split(d3s, dim=2), path_weights):
                    outputs[slot] = ((x * w_p).unsqueeze(2) * a_p).view(n, mul * a_p.shape[2])
                continue
            y = torch.bmm(x.view(n, mul, d1), a)
            for slot, y_p, w_p in zip(slots, y.split(d3s, dim=2), path_weights):
                outputs[slot] = (y_p * w_p.unsqueeze(2)).view(n, mul * y_p.shape[2])
        return torch.cat(outputs, dim=1)
