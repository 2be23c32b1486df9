"""Radial basis and smooth cutoff envelope of the edge length."""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """sqrt(2/rc) sin(n pi r / rc) / r for n = 1..num_basis (DimeNet / NequIP).

    The frequencies are trainable; at r -> 0 each function tends to a finite value.
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        self.frequencies = nn.Parameter(freqs, requires_grad=trainable)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [E] -> [E, num_basis]
        x = r.unsqueeze(-1) / self.cutoff
        # sin(f x)/x is finite at x = 0; guard the division so autograd stays finite too.
        safe = torch.where(x > 1e-9, x, torch.ones_like(x))
        value = torch.sin(self.frequencies * safe) / safe
        value = torch.where(x > 1e-9, value, self.frequencies.expand_as(value))
        return self.prefactor / self.cutoff * value


class PolynomialCutoff(nn.Module):
    """Smooth envelope f(r) that is 1 at r=0 and goes to 0 at the cutoff with p-1 continuous derivatives.

    f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r/rc (Klicpera et al. 2020).
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        if p < 2:
            raise ValueError(f"polynomial cutoff needs p >= 2 for continuous forces, got {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)  # an integer power: exact, and torch.compile lowers it (a float power it does not, 2.13)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [E] -> [E]
        p = self.p
        x = r / self.cutoff
        out = (
            1.0
            - 0.5 * (p + 1.0) * (p + 2.0) * x.pow(p)
            + p * (p + 2.0) * x.pow(p + 1.0)
            - 0.5 * p * (p + 1.0) * x.pow(p + 2.0)
        )
        return out * (x < 1.0)
