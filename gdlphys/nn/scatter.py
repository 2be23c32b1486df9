"""Sum pooling over an index (neighbours -> centre atom, atoms -> graph) and its mirror, gathering rows.

``scatter_sum`` and ``gather_rows`` are each other's gradient, and both are ``torch.library`` custom
operators, so ``torch.compile`` calls PyTorch's own kernels for them (index_add, index_select)
instead of generating its own. Inductor's generated scatter writes every row with an atomic
compare-and-swap as soon as a kernel runs on more than one thread: on 2 cores, a compiled
2,016-atom step took longer on two threads than on one, the scatters of the messages and of the
feature gradients (``h[src]``'s backward) 1.5-4.5x slower (docs/benchmarks.md, "Compiled, and
threads"). Eager results are PyTorch's index_add and index_select, as before; gradients of any
order (forces, and training through forces) are these two operators again.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("gdlphys::scatter_sum", mutates_args=())
def _scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    return src.new_zeros((dim_size, *src.shape[1:])).index_add_(0, index, src)


@_scatter_sum.register_fake
def _(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    return src.new_empty((dim_size, *src.shape[1:]))


@torch.library.custom_op("gdlphys::gather_rows", mutates_args=())
def _gather_rows(src: Tensor, index: Tensor) -> Tensor:
    return src.index_select(0, index)


@_gather_rows.register_fake
def _(src: Tensor, index: Tensor) -> Tensor:
    return src.new_empty((index.shape[0], *src.shape[1:]))


def _keep_index(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1])
    ctx.rows = inputs[0].shape[0]


def _scatter_sum_backward(ctx, grad: Tensor):
    (index,) = ctx.saved_tensors
    return _gather_rows(grad, index), None, None


def _gather_rows_backward(ctx, grad: Tensor):
    (index,) = ctx.saved_tensors
    return _scatter_sum(grad, index, ctx.rows), None


_scatter_sum.register_autograd(_scatter_sum_backward, setup_context=_keep_index)
_gather_rows.register_autograd(_gather_rows_backward, setup_context=_keep_index)


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum the rows of ``src`` into ``dim_size`` bins given by ``index`` (differentiable)."""
    return _scatter_sum(src.contiguous(), index, dim_size)


def gather_rows(src: Tensor, index: Tensor) -> Tensor:
    """``src[index]`` along the first dimension (differentiable; the gradient is :func:`scatter_sum`)."""
    return _gather_rows(src.contiguous(), index)
