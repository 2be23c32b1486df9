"""The architecture options of a potential: a typed dataclass is the config schema."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

INTERACTIONS = ("nequip", "mace")


@dataclass
class ModelConfig:
    """Hyper-parameters of the equivariant potential (every one settable from YAML).

    Attributes:
        cutoff: radial cutoff in Å; pairs at or beyond it do not interact.
        num_features: multiplicity of each irrep in the hidden features.
        l_max: highest rotation order of spherical harmonics and features.
        num_layers: number of interaction (message-passing) blocks.
        num_basis: number of Bessel radial basis functions.
        cutoff_p: exponent of the polynomial cutoff envelope (p - 1 continuous derivatives).
        radial_hidden: width of the radial MLP that weights each tensor-product path.
        radial_layers: hidden layers of the radial MLP.
        readout_hidden: width of the scalar readout MLP.
        parity: keep features of both parities (l e and l o); False keeps only the
            parity of Y_l, which is cheaper and still exactly E(3)-equivariant.
        neighbor_norm: divide the neighbour sum by sqrt(avg. count) ("sqrt", NequIP) or by the count ("mean").
        dipole: add an equivariant dipole head (charge-neutral atomic charges times positions
            plus atomic l=1 dipoles) on the last layer's features; needs l_max >= 1.
        interaction: the update of each block after the neighbour sum. "nequip": linear,
            species self-connection, gated nonlinearity. "mace": a MACE-style product basis,
            the symmetric products of the atomic basis A_i up to ``correlation`` factors, coupled
            channel-wise to each irrep with element-dependent weights, then a linear map (no gate:
            the products are the nonlinearity). One "mace" layer sees up to ``correlation``
            neighbours at once. Measured against "nequip" in docs/model.md.
        correlation: correlation order nu of the "mace" product basis (MACE uses 3); 1 is linear
            in A_i. Ignored by "nequip".
    """

    cutoff: float = 5.0
    num_features: int = 32
    l_max: int = 2
    num_layers: int = 2
    num_basis: int = 8
    cutoff_p: int = 6
    radial_hidden: int = 64
    radial_layers: int = 2
    readout_hidden: int = 16
    parity: bool = False
    neighbor_norm: Literal["sqrt", "mean"] = "sqrt"
    dipole: bool = False
    interaction: Literal["nequip", "mace"] = "mace"
    correlation: int = 3

    def __post_init__(self) -> None:
        if self.cutoff <= 0:
            raise ValueError(f"model.cutoff must be positive, got {self.cutoff}")
        for name in ("num_features", "num_layers", "num_basis", "radial_hidden", "readout_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.l_max < 0:
            raise ValueError(f"model.l_max must be >= 0, got {self.l_max}")
        if self.neighbor_norm not in ("sqrt", "mean"):
            raise ValueError(f"model.neighbor_norm must be 'sqrt' or 'mean', got {self.neighbor_norm!r}")
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"model.interaction must be 'nequip' or 'mace', got {self.interaction!r}")
        if isinstance(self.correlation, bool) or not isinstance(self.correlation, int) or self.correlation < 1:
            raise ValueError(f"model.correlation must be an integer >= 1, got {self.correlation!r}")
        if self.dipole and self.l_max < 1:
            raise ValueError("model.dipole needs vector features: set model.l_max >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """The config a potential file records. A record without ``interaction`` was written
        before that option existed, when every block was NequIP's (the default is now "mace")."""
        values = {"interaction": "nequip", **values}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
