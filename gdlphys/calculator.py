"""The ASE calculator: attaches a gdlphys potential (or a committee of them) to MD, relaxations, vibrations."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from gdlphys import keys
from gdlphys.models.files import load_potential
from gdlphys.models.potential import Potential
from gdlphys.nn.edge_chunks import check_edge_chunk
from gdlphys.graph import NeighbourListCache
from gdlphys.threads import CALL_SMALL_WORK_ATOMS, ThreadPolicy, using_threads


class UncertaintyExceeded(RuntimeError):
    """A committee's force spread passed the threshold the user set."""


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return getattr(torch, dtype)


PotentialLike = Potential | str | Path


def _check_finite(atoms) -> None:
    """Name the first atom whose position is NaN or infinite, or a non-finite cell."""
    bad = ~np.isfinite(atoms.positions).all(axis=1)
    if bad.any():
        atom = int(np.flatnonzero(bad)[0])
        symbol = atoms.get_chemical_symbols()[atom]
        raise ValueError(f"position of atom {atom} ({symbol}) is not finite: {atoms.positions[atom].tolist()}")
    if not np.isfinite(atoms.cell.array).all():
        raise ValueError(f"the cell is not finite: {atoms.cell.array.tolist()}")


# torch.compile's generated CPU kernels on one thread, whatever the threads of the call that compiles
# them: they would keep that count for good (a kernel compiled on two idle cores spins against a
# process that takes one later), and a scatter compiled for two threads writes every row by atomic
# compare-and-swap. Measured on 2 cores (docs/benchmarks.md, "Compiled, and threads"): a 2,016-atom
# step compiled for two threads 1.23 s, for one with PyTorch's own kernels on two 1.26 s, all on one 1.66 s.
COMPILE_OPTIONS = {"cpp.threads": 1}


class GDLCalculator(Calculator):
    """ASE calculator for a gdlphys potential, or the mean of a committee of potentials.

    Args:
        potential: a Potential, a shipped potential's name (e.g. "ethanol-xtb"), a potential
            file, or the RUN_DIR of ``gdlphys train``; or a list of these (a committee).
        device: "cpu", "cuda", "cuda:1", or None/"auto" (CUDA when present).
        dtype: "float32" or "float64"; None keeps the precision the potential was trained in.
            Any potential runs in float64 on request (a private copy; the original is untouched).
        skin: neighbour-list skin in Å (0: search every call). Results do not depend on it.
        dispersion: an ASE calculator whose energy, forces and stress are added (e.g. dftd3's DFTD3).
        driver: committee only: the index of the member whose energy, forces and stress (and
            dipole) the calculator returns instead of the committee's mean; ``energy_std`` and
            ``forces_std`` stay the whole committee's. MD then moves on that one member's surface
            and the others judge it: what an active-learning loop explores to find where the
            potential it ships goes wrong (a mean can hide one member's holes).
        max_force_std: committee only: largest per-atom force spread (eV/Å) tolerated ...
        on_exceed: ... beyond which the calculator warns ("warn") or raises UncertaintyExceeded ("stop").
        compile: run the network through ``torch.compile`` (dynamic shapes: a changing number
            of edges does not recompile). The first call compiles: minutes on a CPU the first
            time, seconds once PyTorch's on-disk cache holds the kernels. It pays off in long MD
            (``gdlphys bench md --compile`` measures it). Where compiling fails (no C++
            compiler, say) the calculator warns once and runs eagerly; results do not change.
        threads: CPU threads of each call. None: chosen per call (:class:`gdlphys.threads.ThreadPolicy`):
            one below 100 atoms, where more gain little; above, the cores this process may use
            (affinity, OMP_NUM_THREADS, at most the caller's torch setting) that no other process
            is busy on. An int: that many. Set only around the call: ``torch.get_num_threads()``
            is the caller's again after it. Under ``compile`` the kernels torch generates run on
            one thread (:data:`COMPILE_OPTIONS`); PyTorch's own (matrix products, gathers and
            scatters) follow this setting.
        edge_chunk: memory of a call (:attr:`gdlphys.models.Potential.edge_chunk`): None keeps the
            potential's own setting (by default automatic: structures of more than 200,000 edges,
            some 4,000 atoms at liquid density, sum their messages in chunks of edges recomputed
            for the forces, so memory grows with the atoms and not with the edges); 0: never chunk;
            a number: that many edges at a time. Results do not depend on it. Not under ``compile``.

    Results: ``energy``, ``free_energy`` (eV), ``energies`` (per atom, eV), ``forces`` (eV/Å),
    ``stress`` (Voigt, eV/Å^3) for structures periodic in all three directions; a committee
    adds ``energy_std`` (eV) and ``forces_std`` (per atom, eV/Å). Potentials with a dipole head
    add ``dipole`` (e*Å; the committee mean) and ``charges`` (e).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict = {}

    def __init__(
        self,
        potential: PotentialLike | Sequence[PotentialLike],
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        skin: float = 0.0,
        dispersion: Calculator | None = None,
        max_force_std: float | None = None,
        on_exceed: str = "warn",
        compile: bool = False,
        threads: int | None = None,
        edge_chunk: int | None = None,
        driver: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.edge_chunk = check_edge_chunk(edge_chunk)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
        self.threads = threads
        self._thread_policy = ThreadPolicy(CALL_SMALL_WORK_ATOMS)  # asked again at every call
        members = list(potential) if isinstance(potential, (list, tuple)) else [potential]
        if not members:
            raise ValueError("a committee needs at least one potential")
        if on_exceed not in ("warn", "stop"):
            raise ValueError(f"on_exceed must be 'warn' or 'stop', got {on_exceed!r}")
        if max_force_std is not None and len(members) < 2:
            raise ValueError("max_force_std needs a committee (two or more potentials)")
        if driver is not None and (isinstance(driver, bool) or not isinstance(driver, int) or not 0 <= driver < len(members)):
            raise ValueError(f"driver must be None or a member's index, 0 to {len(members) - 1}, got {driver!r}")
        self.driver = driver
        self.device = _resolve_device(device)
        self.compile = bool(compile)
        loaded = [load_potential(m) for m in members]
        self.dtype = _resolve_dtype(dtype, loaded[0].dtype)
        self.potentials = [self._prepare(p) for p in loaded]
        self._eager_models = [p.model for p in self.potentials] if self.compile else []  # the fallback
        for potential in self.potentials if self.compile else []:
            potential.model = torch.compile(potential.model, dynamic=True, options=COMPILE_OPTIONS)
        self.neighbours = NeighbourListCache(max(p.cutoff for p in self.potentials), skin)
        self.dispersion = dispersion
        self.max_force_std, self.on_exceed = max_force_std, on_exceed
        # per-instance copy: the class-level list is shared by every calculator
        properties = list(type(self).implemented_properties)
        if len(self.potentials) > 1:
            properties += ["energy_std", "forces_std"]
        if dispersion is not None:
            properties.remove("energies")
        if all(p.dipole_head is not None for p in self.potentials):
            properties += ["dipole", "charges"]
        self.implemented_properties = properties

    def _prepare(self, potential: Potential) -> Potential:
        new_chunk = self.edge_chunk is not None and potential.edge_chunk != self.edge_chunk
        if self.compile or new_chunk or potential.dtype != self.dtype or potential.species_lookup.device != self.device:
            potential = copy.deepcopy(potential)  # never change the caller's potential as a side effect
        if new_chunk:
            potential.edge_chunk = self.edge_chunk
        potential = potential.to(device=self.device, dtype=self.dtype).eval()
        for parameter in potential.parameters():
            parameter.requires_grad_(False)  # only positions (and strain) need gradients at inference
        return potential

    def _evaluate(self, graph: dict[str, torch.Tensor], want_stress: bool) -> list[dict[str, torch.Tensor]]:
        def run() -> list[dict[str, torch.Tensor]]:
            return [p(graph, compute_forces=True, compute_stress=want_stress) for p in self.potentials]

        try:
            return run()
        except torch._dynamo.exc.TorchDynamoException as error:  # the compiler failed: fall back, say why
            if not self._eager_models:
                raise
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                          "running the potential eagerly", RuntimeWarning, stacklevel=3)
            for potential, model in zip(self.potentials, self._eager_models):
                potential.model = model
            self._eager_models, self.compile = [], False
            return run()

    @property
    def potential(self) -> Potential:
        """The (first) potential."""
        return self.potentials[0]

    def graph(self, atoms) -> dict[str, torch.Tensor]:
        """The graph dict of ``atoms`` that this calculator's potentials see: its dtype, device and neighbour list."""
        pbc = np.asarray(atoms.pbc, dtype=bool)
        return self.neighbours.graph(atoms.numbers, atoms.positions, atoms.cell.array, pbc, self.dtype, self.device)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if len(atoms) == 0:
            raise ValueError("cannot evaluate an empty structure (0 atoms)")
        _check_finite(atoms)
        with using_threads(self.threads if self.threads is not None else self._thread_policy(len(atoms))):
            self._calculate(atoms, properties)

    def _calculate(self, atoms, properties) -> None:
        """The work of :meth:`calculate`, inside its thread setting."""
        pbc = np.asarray(atoms.pbc, dtype=bool)
        want_stress = "stress" in properties
        if want_stress and not pbc.all():
            raise ValueError("stress needs a structure periodic in all three directions (atoms.pbc all True)")
        graph = self.graph(atoms)
        outs = self._evaluate(graph, want_stress)

        def stacked(key: str) -> np.ndarray:
            return torch.stack([o[key].detach() for o in outs]).cpu().double().numpy()

        def chosen(values: np.ndarray) -> np.ndarray:  # the committee's mean, or the driving member's
            return values.mean(axis=0) if self.driver is None else values[self.driver]

        energies, forces, atomic = stacked(keys.ENERGY)[:, 0], stacked(keys.FORCES), stacked(keys.ATOMIC_ENERGIES)
        energy = float(chosen(energies))
        if not np.isfinite(energies).all() or not np.all(np.isfinite(forces)):
            raise FloatingPointError(f"the potential gave a non-finite energy or forces (energy {energy}) for this structure")
        results = {"energy": energy, "energies": chosen(atomic), "forces": chosen(forces)}
        if want_stress:
            results["stress"] = full_3x3_to_voigt_6_stress(chosen(stacked(keys.STRESS)[:, 0]))
        if "dipole" in self.implemented_properties:
            results["dipole"] = chosen(stacked(keys.DIPOLE)[:, 0])
            results["charges"] = chosen(stacked(keys.ATOMIC_CHARGES))
        if len(outs) > 1:
            results["energy_std"] = float(energies.std())
            results["forces_std"] = np.sqrt(forces.var(axis=0).sum(axis=-1))
        if self.dispersion is not None:
            wanted = ["energy", "forces"] + (["stress"] if want_stress else [])
            for name in wanted:
                results[name] = results[name] + self.dispersion.get_property(name, atoms)
            del results["energies"]  # D3 has no per-atom split; a partial one would not sum to the energy
        results["free_energy"] = results["energy"]
        self.results = results
        if self.max_force_std is not None:
            self._check_uncertainty(float(results["forces_std"].max()))

    def _check_uncertainty(self, spread: float) -> None:
        if spread <= self.max_force_std:
            return
        message = (
            f"committee force spread {spread:.3f} eV/Å exceeds max_force_std {self.max_force_std} eV/Å: "
            "the structure is outside what the potentials agree on"
        )
        if self.on_exceed == "stop":
            raise UncertaintyExceeded(message)
        warnings.warn(message, stacklevel=2)
