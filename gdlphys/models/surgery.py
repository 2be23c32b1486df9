"""Model surgery for fine-tuning: teach a trained potential new elements without changing
what it predicts for the elements it knows, and refit its reference energies.

Per-species weights live in four places of the NequIP-style model (five in the MACE-style one):

- ``SpeciesEmbedding.linear``: e3nn ``o3.Linear`` from ``n_species x 0e`` (one-hot) to the
  initial features; one path, weight view ``[n_species, num_features]``.
- ``Interaction.self_connection`` of every block: ``o3.FullyConnectedTensorProduct`` of the
  features with the one-hot; one path per (feature irrep, output irrep), view
  ``[mul_in, n_species, mul_out]``.
- ``SpeciesScaleShift.scale`` (parameter) and ``.reference_energies`` (buffer), ``[n_species]``.
- in the MACE-style model, ``ProductInteraction.product.weights`` of every block: one
  ``[n_species, n_paths, channels]`` tensor per output irrep, indexed by the one-hot without
  a fan-in factor, so old rows are copied as they are.

e3nn multiplies each path by a normalisation constant ``path_weight`` that depends on the
fan-in, here ``1/sqrt(n_species)``; the copied slices are rescaled by
``path_weight_old / path_weight_new`` so that an old element's one-hot gives bit-for-bit the
same features (up to one rounding). Every other weight is copied unchanged.

New elements start as the *average known element* (``init="mean"``, the default): their rows
(embedding, self-connections, scale) are the mean of the old species' rows, a neutral,
finite start whose energies are of the right size. ``init="analogue"`` copies instead the
rows of the known element most like the new one (same periodic-table group nearest in
period: P from N, Br from Cl, Si from C; else the same period at most two groups away; else
the mean). It sounds better and measured worse: organic-xtb grown by P, on phosphorus-xtb's
test frames, starts at a force MAE of 569 meV/Å from N and 442 meV/Å from the mean, and ends
a 3-minute fine-tune no better (131 against 126 meV/Å). A copy of N sees P's bonds, 0.4 Å
longer than N's, as hugely stretched N bonds; the mean has no such strong opinion. Their
reference energies start at the analogue's (or the mean) and should be refitted on the new data
(:func:`refit_reference_energies`).

Species order: the Potential maps atomic numbers through a lookup table and does not need
sorted species, so old species keep their indices and new ones are appended (sorted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from e3nn import o3
from torch.utils.data import DataLoader, Dataset

from gdlphys import keys
from gdlphys.graph import collate, structure_graph
from gdlphys.models.potential import Potential
from gdlphys.nn import Interaction, ProductInteraction, SpeciesEmbedding, SpeciesScaleShift

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



def _grow_linear(old: o3.Linear, new: o3.Linear, n_old: int, mix: torch.Tensor) -> torch.Tensor:
    """Weight of ``new`` (one-hot input of more species) that reproduces ``old`` on the old species;
    the new species' rows are ``mix`` (``[n_new, n_old]``) times the old rows."""
    weight = torch.zeros_like(new.weight)
    pairs = zip(old.weight_views(yield_instruction=True), new.weight_views(weight, yield_instruction=True))
    for (_, ins_old, view_old), (_, ins_new, view_new) in pairs:
        rows = view_old.detach() * (ins_old.path_weight / ins_new.path_weight)
        view_new[:n_old] = rows
        view_new[n_old:] = mix.to(rows) @ rows
    return weight


def _grow_species_product(old: o3.TensorProduct, new: o3.TensorProduct, n_old: int, mix: torch.Tensor) -> torch.Tensor:
    """Same for a tensor product whose second input is the species one-hot ([mul_in, n_species, mul_out] views)."""
    weight = torch.zeros_like(new.weight)
    pairs = zip(old.weight_views(yield_instruction=True), new.weight_views(weight, yield_instruction=True))
    for (_, ins_old, view_old), (_, ins_new, view_new) in pairs:
        if ins_old.connection_mode != "uvw" or view_old.shape[1] != n_old:
            raise ValueError(f"unexpected self-connection path {ins_old}: cannot grow its species axis")
        rows = view_old.detach() * (ins_old.path_weight / ins_new.path_weight)
        view_new[:, :n_old] = rows
        view_new[:, n_old:] = torch.einsum("ak,ikj->iaj", mix.to(rows), rows)
    return weight


def _grow_rows(rows: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """A ``[n_old, ...]`` per-species tensor with the new species' rows (``mix @ rows``) appended."""
    return torch.cat([rows, torch.einsum("an,n...->a...", mix.to(rows), rows)])


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
    grown = Potential(potential.config, old_species + added, grown_reference, potential.avg_num_neighbors)
    grown = grown.to(dtype=dtype, device=device)

    state = {k: v.detach().clone() for k, v in potential.state_dict().items()}
    for index, (module_old, module_new) in enumerate(zip(potential.model, grown.model)):
        if type(module_old) is not type(module_new):
            raise ValueError(f"module {index} is {type(module_old).__name__} in the potential but {type(module_new).__name__} when rebuilt")
        prefix = f"model.{index}"
        if isinstance(module_old, SpeciesEmbedding):
            state[f"{prefix}.linear.weight"] = _grow_linear(module_old.linear, module_new.linear, n_old, mix)
        elif isinstance(module_old, Interaction):
            state[f"{prefix}.self_connection.weight"] = _grow_species_product(
                module_old.self_connection, module_new.self_connection, n_old, mix
            )
            if isinstance(module_old, ProductInteraction):
                for k, weight in enumerate(module_old.product.weights):
                    state[f"{prefix}.product.weights.{k}"] = _grow_rows(weight.detach(), mix)
        elif isinstance(module_old, SpeciesScaleShift):
            scale = module_old.scale.detach()
            state[f"{prefix}.scale"] = torch.cat([scale, mix.to(scale) @ scale])
            state[f"{prefix}.reference_energies"] = grown_reference.to(module_old.reference_energies)
    grown.load_state_dict(state)  # strict: a per-species tensor this function does not know fails here
    grown.metadata = dict(getattr(potential, "metadata", {}) or {})
    grown.train(potential.training)
    return grown


def species_entry_masks(potential: Potential, species: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-species parameters -> boolean masks (parameter-shaped) of the entries that belong to ``species``.

    Those are the rows a species owns: its embedding row, its slices of every self-connection
    and product basis, its scale. Fine-tuning uses them to keep a new element trainable inside a
    frozen part, and to leave it out of the penalty that holds the old weights near the parent's.
    """
    wanted = [potential.species.index(int(z)) for z in species if int(z) in potential.species]
    masks: dict[str, torch.Tensor] = {}
    for index, module in enumerate(potential.model):
        prefix = f"model.{index}"
        if isinstance(module, SpeciesEmbedding):
            mask = torch.zeros_like(module.linear.weight, dtype=torch.bool)
            for view in module.linear.weight_views(mask):
                view[wanted] = True
            masks[f"{prefix}.linear.weight"] = mask
        elif isinstance(module, Interaction):
            mask = torch.zeros_like(module.self_connection.weight, dtype=torch.bool)
            for view in module.self_connection.weight_views(mask):
                view[:, wanted] = True
            masks[f"{prefix}.self_connection.weight"] = mask
            if isinstance(module, ProductInteraction):
                for k, weight in enumerate(module.product.weights):
                    mask = torch.zeros_like(weight, dtype=torch.bool)
                    mask[wanted] = True
                    masks[f"{prefix}.product.weights.{k}"] = mask
        elif isinstance(module, SpeciesScaleShift):
            mask = torch.zeros_like(module.scale, dtype=torch.bool)
            mask[wanted] = True
            masks[f"{prefix}.scale"] = mask
    return masks


def _scale_shift(potential: Potential) -> SpeciesScaleShift:
    modules = [m for m in potential.model if isinstance(m, SpeciesScaleShift)]
    if len(modules) != 1:
        raise ValueError(f"expected one SpeciesScaleShift in the model, found {len(modules)}")
    return modules[0]


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


def _graphs(frames: str | Path | Dataset | Sequence[Atoms], cutoff: float, dtype: torch.dtype):
    if isinstance(frames, (str, Path)):
        from gdlphys.data.datamodule import GraphDataset

        return GraphDataset(frames, cutoff, dtype, cache=False)
    if isinstance(frames, Dataset):
        return frames
    graphs = []
    for atoms in frames:
        graph = structure_graph(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, cutoff=cutoff, dtype=dtype)
        graph[keys.ENERGY] = torch.tensor([atoms.get_potential_energy()], dtype=dtype)
        graphs.append(graph)
    return graphs


@torch.no_grad()
def refit_reference_energies(
    potential: Potential,
    frames: str | Path | Dataset | Sequence[Atoms],
    new_species: Sequence[int] = (),
    batch_size: int = 32,
    keep_old: float = 1e-9,
) -> ReferenceRefit:
    """Refit E0 (in place) by least squares on labelled ``frames`` (HDF5 path, graph dataset or Atoms).

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
    dtype = torch.float64
    work = potential  # predictions in the potential's own dtype, least squares in float64
    loader = DataLoader(_graphs(frames, potential.cutoff, potential.dtype), batch_size=batch_size, collate_fn=collate)
    index = {z: k for k, z in enumerate(potential.species)}
    rows, residual = [], []
    was_training = work.training
    work.eval()
    try:
        for batch in loader:
            if keys.ENERGY not in batch:
                raise ValueError("refitting reference energies needs energy labels on every frame")
            with torch.enable_grad():
                pred = work(batch, compute_forces=False)[keys.ENERGY].double()
            species = work.species_index(batch[keys.ATOMIC_NUMBERS])
            counts = torch.zeros(len(pred), len(index), dtype=dtype)
            counts.index_put_((batch[keys.BATCH], species), torch.ones_like(species, dtype=dtype), accumulate=True)
            rows.append(counts)
            residual.append(batch[keys.ENERGY].double() - pred)
    finally:
        work.train(was_training)
    if not rows:
        raise ValueError("no frames to refit the reference energies on")
    counts, residual = torch.cat(rows).numpy(), torch.cat(residual).numpy()
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    new_species = {int(z) for z in new_species}
    penalised = [k for k in present if potential.species[k] not in new_species] if new_species else []
    matrix = counts[:, present]
    if penalised:
        scale = keep_old * float((matrix**2).sum()) / len(present)
        ridge = np.zeros((len(penalised), len(present)))
        for row, k in enumerate(penalised):
            ridge[row, list(present).index(k)] = np.sqrt(scale)
        matrix = np.vstack([matrix, ridge])
        target = np.concatenate([residual, np.zeros(len(penalised))])
    else:
        target = residual
    delta, *_ = np.linalg.lstsq(matrix, target, rcond=None)
    n_atoms = counts.sum(axis=1)
    after = residual - counts[:, present] @ delta
    old = potential.reference_energies.detach().double().cpu().numpy().copy()
    new = old.copy()
    new[present] += delta
    buffer = _scale_shift(potential).reference_energies
    buffer.copy_(torch.as_tensor(new, dtype=buffer.dtype, device=buffer.device))
    return ReferenceRefit(
        species=list(potential.species),
        old=[float(e) for e in old],
        new=[float(e) for e in buffer.double().cpu()],
        residual_rms_per_atom_before=float(np.sqrt(np.mean((residual / n_atoms) ** 2))),
        residual_rms_per_atom_after=float(np.sqrt(np.mean((after / n_atoms) ** 2))),
        n_frames=len(residual),
    )

