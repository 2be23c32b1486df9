"""Model surgery for fine-tuning: teach a trained potential new elements without changing
what it predicts for the elements it knows, and refit its reference energies.

Every block with per-species weights is a :class:`~gdlphys.nn.species.SpeciesDependent` and
grows them itself (the embedding, each interaction's self-connection, the product basis, the
per-species scale and reference energies): the surgery walks the potential's named modules and
asks each one, so an old element gives the same features (up to one rounding) and every other
weight is copied unchanged.

New elements start as the *average known element* (``init="mean"``, the default): their rows
(embedding, self-connections, scale) are the mean of the old species' rows, a neutral,
finite start whose energies are of the right size. ``init="analogue"`` copies instead the
rows of the known element most like the new one (same periodic-table group nearest in
period: P from N, Br from Cl, Si from C; else the same period at most two groups away; else
the mean). It sounds better and measured worse: organic-xtb grown by P, on phosphorus-xtb's
test frames, starts and ends a short fine-tune worse from N than from the mean (docs/finetune.md):
a copy of N sees P's bonds, 0.4 Å longer than N's, as hugely stretched N bonds; the mean has
no such strong opinion. Their
reference energies start at the analogue's (or the mean) and should be refitted on the new data
(:func:`refit_reference_energies`).

Species order: the Potential maps atomic numbers through a lookup table and does not need
sorted species, so old species keep their indices and new ones are appended (sorted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch.utils.data import DataLoader, Dataset

from gdlphys import keys
from gdlphys.conversion import atoms_to_graph
from gdlphys.graph import collate
from gdlphys.models.composition import element_counts, fit_composition
from gdlphys.models.potential import Potential
from gdlphys.nn.species import SpeciesDependent

__all__ = [
    "GROW_INITS", "ReferenceRefit", "analogue_element", "grow_species", "refit_reference_energies",
    "species_entry_masks",
]

GROW_INITS = ("analogue", "mean")
_PERIOD_ENDS = (2, 10, 18, 36, 54, 86, 118)


def group_and_period(z: int) -> tuple[int, int]:
    """IUPAC group (1..18; lanthanides and actinides count as group 3) and period of element ``z``."""
    if not 1 <= z <= 118:
        raise ValueError(f"atomic number {z} is not an element (1..118)")
    period = next(k for k, end in enumerate(_PERIOD_ENDS, start=1) if z <= end)
    position = z - (_PERIOD_ENDS[period - 2] if period > 1 else 0)
    if period == 1:
        return (1 if z == 1 else 18), 1
    if period <= 3:
        return (position if position <= 2 else position + 10), period
    if period <= 5:
        return position, period
    if position <= 2:
        return position, period
    return (3 if position <= 17 else position - 14), period


def analogue_element(z: int, known: Iterable[int]) -> int | None:
    """The known element most like ``z``: same group nearest in period (lighter first on a tie),
    else same period at most two groups away (heavier group first on a tie), else None."""
    known = [int(k) for k in known if int(k) != int(z)]
    group, period = group_and_period(int(z))
    places = {k: group_and_period(k) for k in known}
    same_group = [k for k in known if places[k][0] == group]
    if same_group:
        return min(same_group, key=lambda k: (abs(places[k][1] - period), places[k][1]))
    same_period = [k for k in known if places[k][1] == period and abs(places[k][0] - group) <= 2]
    if same_period:
        return min(same_period, key=lambda k: (abs(places[k][0] - group), -places[k][0]))
    return None


def _start_mix(old_species: Sequence[int], added: Sequence[int], init: str) -> torch.Tensor:
    """[n_added, n_old] weights: each new element's starting rows as a mix of the old ones' rows."""
    if init not in GROW_INITS:
        raise ValueError(f"init must be one of {', '.join(GROW_INITS)}, got {init!r}")
    mix = torch.full((len(added), len(old_species)), 1.0 / max(len(old_species), 1), dtype=torch.float64)
    if init == "analogue":
        for row, z in enumerate(added):
            analogue = analogue_element(z, old_species)
            if analogue is not None:
                mix[row] = 0.0
                mix[row, list(old_species).index(analogue)] = 1.0
    return mix



def grow_species(potential: Potential, new_species: Iterable[int], init: str = "mean") -> Potential:
    """A NEW potential that knows ``potential.species`` plus ``new_species`` (``potential`` is untouched).

    On structures made only of the old elements it predicts the same energies, forces and
    stress as ``potential`` (to float rounding). Elements it already knows are ignored;
    with nothing new, the result is an exact copy. ``init`` says where the new elements' rows
    start (module docstring): "mean" (default) or "analogue".
    """
    old_species = list(potential.species)
    added = sorted({int(z) for z in new_species} - set(old_species))
    for z in added:
        if not 1 <= z <= 118:
            raise ValueError(f"cannot add atomic number {z}: elements are 1..118")
    n_old = len(old_species)
    mix = _start_mix(old_species, added, init)
    reference = potential.reference_energies.detach().double().cpu()
    grown_reference = torch.cat([reference, mix @ reference])
    dtype, device = potential.dtype, potential.species_lookup.device
    grown = Potential(potential.config, old_species + added, grown_reference, potential.avg_num_neighbors, dtype=dtype)
    grown = grown.to(device=device)

    state = {k: v.detach().clone() for k, v in potential.state_dict().items()}
    for name, block in potential.named_modules():
        if isinstance(block, SpeciesDependent):
            grown_block = grown.get_submodule(name)
            if type(grown_block) is not type(block):
                raise ValueError(f"{name} is {type(block).__name__} in the potential but {type(grown_block).__name__} when rebuilt")
            for key, value in block.grown_state(grown_block, n_old, mix).items():
                state[f"{name}.{key}"] = value
    grown.load_state_dict(state)  # strict: a per-species tensor that no block grew fails here
    grown.metadata = dict(potential.metadata)
    grown.source = potential.source
    grown.train(potential.training)
    return grown


def species_entry_masks(potential: Potential, species: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-species parameters -> boolean masks (parameter-shaped) of the entries that belong to ``species``.

    Those are the rows a species owns (each :class:`~gdlphys.nn.species.SpeciesDependent` block
    says which: its embedding row, its slices of every self-connection and product basis, its
    scale). Fine-tuning uses them to keep a new element trainable inside a frozen part, and to
    leave it out of the penalty that holds the old weights near the parent's.
    """
    wanted = [potential.species.index(int(z)) for z in species if int(z) in potential.species]
    masks: dict[str, torch.Tensor] = {}
    for name, block in potential.named_modules():
        if isinstance(block, SpeciesDependent):
            masks.update({f"{name}.{key}": mask for key, mask in block.species_masks(wanted).items()})
    return masks


@dataclass
class ReferenceRefit:
    """What :func:`refit_reference_energies` did (eV per atom of each species)."""

    species: list[int]
    old: list[float]
    new: list[float]
    residual_rms_per_atom_before: float  # eV/atom, energy error of the data before the refit
    residual_rms_per_atom_after: float
    n_frames: int

    def summary(self) -> str:
        changes = ", ".join(
            f"{chemical_symbols[z]}: {a:.4f} -> {b:.4f}" for z, a, b in zip(self.species, self.old, self.new)
        )
        return (
            f"reference energies (eV) {changes}; energy RMS on {self.n_frames} frames "
            f"{1000 * self.residual_rms_per_atom_before:.1f} -> {1000 * self.residual_rms_per_atom_after:.1f} meV/atom"
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _graphs(frames: Dataset | Sequence[Atoms], cutoff: float, dtype: torch.dtype):
    if isinstance(frames, Dataset):
        return frames
    return [atoms_to_graph(atoms, cutoff, dtype) for atoms in frames]


def _energies_only(graphs) -> dict[str, torch.Tensor]:
    """A batch of the structures and their energies (frames may differ in their other labels)."""
    others = set(keys.LABELS) - {keys.ENERGY}
    return collate([{k: v for k, v in graph.items() if k not in others} for graph in graphs])


@torch.no_grad()
def refit_reference_energies(
    potential: Potential,
    frames: Dataset | Sequence[Atoms],
    new_species: Sequence[int] = (),
    batch_size: int = 32,
    keep_old: float = 1e-9,
) -> ReferenceRefit:
    """Refit E0 (in place) by least squares on labelled ``frames`` (a graph dataset, e.g. ``GraphDataset`` of an HDF5 file, or labelled Atoms).

    The potential's energy is ``E = N(structure) + sum_atoms E0[Z]`` with N the part the
    network explains (zero for an isolated atom), so the change dE0 solves
    ``counts @ dE0 ~ E_ref - E_pred``: a new level of theory (DFT after xTB, ~eV/atom apart)
    then starts with the right per-element offsets, and forces do not change.

    Data with few compositions cannot tell all elements apart (one molecule fixes only one
    combination). A tiny ridge term ``keep_old`` on the old (already trained) elements makes
    such data move the elements that have no reliable E0 yet (``new_species``, e.g. those just
    added by :func:`grow_species`) — or, with none given, spread the change by least norm. With enough compositions the term changes the fit by ~keep_old.
    Elements absent from ``frames`` keep their E0.
    """
    loader = DataLoader(_graphs(frames, potential.cutoff, potential.dtype), batch_size=batch_size, collate_fn=_energies_only)
    numbers, residual = [], []
    was_training = potential.training
    potential.eval()
    try:
        for batch in loader:
            if keys.ENERGY not in batch:
                raise ValueError("refitting reference energies needs energy labels on every frame")
            with torch.enable_grad():
                pred = potential(batch, compute_forces=False)[keys.ENERGY].double()  # in the potential's dtype
            ptr = batch[keys.PTR].tolist()
            numbers.extend(batch[keys.ATOMIC_NUMBERS][a:b].cpu().numpy() for a, b in zip(ptr[:-1], ptr[1:]))
            residual.append((batch[keys.ENERGY].double() - pred).cpu().numpy())
    finally:
        potential.train(was_training)
    if not numbers:
        raise ValueError("no frames to refit the reference energies on")
    counts, residual = element_counts(numbers, potential.species), np.concatenate(residual)
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    new_species = {int(z) for z in new_species}
    damped = [column for column, k in enumerate(present) if potential.species[k] not in new_species] if new_species else []
    fit = fit_composition(counts[:, present], residual, damped, keep_old)
    old = potential.reference_energies.detach().double().cpu().numpy().copy()
    new = old.copy()
    new[present] += fit.values
    buffer = potential.reference_energies
    buffer.copy_(torch.as_tensor(new, dtype=buffer.dtype, device=buffer.device))
    return ReferenceRefit(
        species=list(potential.species),
        old=[float(e) for e in old],
        new=[float(e) for e in buffer.double().cpu()],
        residual_rms_per_atom_before=fit.residual_rms_per_atom_before,
        residual_rms_per_atom_after=fit.residual_rms_per_atom_after,
        n_frames=len(residual),
    )

