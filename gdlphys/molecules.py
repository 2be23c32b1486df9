"""SMILES -> RDKit molecule -> 3D conformers -> ase.Atoms.

Used by data labelling (conformers to start MD from) and by ``predict``. Only
single neutral closed-shell molecules are accepted: the labelling methods and
the potentials assume them, and a salt or an ion would silently get the wrong
charge otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from contextlib import contextmanager

import numpy as np
from ase import Atoms
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, Descriptors

__all__ = ["heavy_atom_rmsd", "parse_smiles", "read_smiles_file", "smiles_to_atoms"]


@contextmanager
def _rdkit_quiet() -> Iterator[None]:
    """Silence RDKit's own stderr messages for one call; we raise a clearer error."""
    block = rdBase.BlockLogs() if hasattr(rdBase, "BlockLogs") else None
    try:
        yield
    finally:
        del block


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse and check a SMILES string; return the sanitised molecule with explicit hydrogens.

    Raises ValueError, naming the string, for: unparsable SMILES, chemically
    invalid SMILES (e.g. a pentavalent carbon), more than one fragment ("CC.O",
    salts), a net formal charge, or unpaired electrons (radicals).
    """
    if not isinstance(smiles, str):
        raise TypeError(f"SMILES must be a str, got {type(smiles).__name__}")
    if not smiles.strip():
        raise ValueError("invalid SMILES '': the string is empty")
    with _rdkit_quiet():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            raise ValueError(f"invalid SMILES {smiles!r}: RDKit cannot parse it (syntax error)")
        problems = Chem.DetectChemistryProblems(mol)
        if problems:
            raise ValueError(f"invalid SMILES {smiles!r}: {problems[0].Message()}")
        try:
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError) as exc:  # RDKit raises its own subclasses of these
            raise ValueError(f"invalid SMILES {smiles!r}: {exc}") from None
    fragments = Chem.GetMolFrags(mol, asMols=True)
    if len(fragments) > 1:
        parts = ", ".join(repr(Chem.MolToSmiles(frag)) for frag in fragments)
        raise ValueError(
            f"SMILES {smiles!r} has {len(fragments)} disconnected fragments ({parts}); give one molecule per SMILES"
        )
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        raise ValueError(f"SMILES {smiles!r} has net formal charge {charge:+d}; only neutral molecules are supported")
    radicals = Descriptors.NumRadicalElectrons(mol)
    if radicals:
        raise ValueError(
            f"SMILES {smiles!r} has {radicals} unpaired electron(s); only closed-shell molecules are supported"
        )
    return Chem.AddHs(mol)


def _preoptimise(mol: Chem.Mol) -> None:
    """Relax every conformer with MMFF94 (UFF where MMFF lacks parameters) in place."""
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=2000)


def smiles_to_atoms(smiles: str, *, n_conformers: int = 1, seed: int = 0, optimize: bool = True) -> list[Atoms]:
    """3D conformers of one molecule, with explicit hydrogens, as ase.Atoms.

    Embedding is RDKit's ETKDG v3 seeded by ``seed`` (deterministic), followed by
    a force-field pre-optimisation (MMFF94, else UFF) when ``optimize``. Each
    Atoms carries ``info["smiles"]`` (the string given) and ``info["conformer"]``.
    """
    if n_conformers < 1:
        raise ValueError(f"n_conformers must be >= 1, got {n_conformers}")
    mol = parse_smiles(smiles)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % 2**31
    with _rdkit_quiet():
        conformer_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
        if not conformer_ids:  # strained or unusual molecules often embed from random coordinates
            params.useRandomCoords = True
            conformer_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
        if not conformer_ids:
            raise ValueError(f"SMILES {smiles!r}: RDKit could not embed a 3D conformer (ETKDG v3 failed)")
        if optimize:
            _preoptimise(mol)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
    conformers = []
    for i, conformer_id in enumerate(conformer_ids):
        positions = np.array(mol.GetConformer(conformer_id).GetPositions(), dtype=np.float64)
        atoms = Atoms(numbers=numbers, positions=positions)
        atoms.info["smiles"] = smiles
        atoms.info["conformer"] = i
        conformers.append(atoms)
    return conformers


def read_smiles_file(path: str | os.PathLike) -> list[str]:
    """The SMILES of a ``.smi``-style file: the first field of each line; blank lines and ``#`` comments skipped.

    Lines are not checked here: a bad one fails on its own when it is labelled (and is reported)."""
    smiles = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            smiles.append(line.split()[0])
    if not smiles:
        raise ValueError(f"{path}: no SMILES found (one per line, first field)")
    return smiles


def heavy_atom_rmsd(numbers: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """RMSD (Å) of the non-hydrogen atoms of two geometries of one molecule after the best
    rotation and translation (Kabsch): how far two relaxed minima are apart."""
    heavy = np.asarray(numbers) > 1
    p, q = a[heavy] - a[heavy].mean(0), b[heavy] - b[heavy].mean(0)
    u, _, vt = np.linalg.svd(p.T @ q)
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.sqrt(np.mean(np.sum((p @ rotation - q) ** 2, axis=1))))
