"""Edge chunks (gdlphys.nn.edge_chunks): the same energy, forces and stress as one pass, far less
kept for the backward pass, and nothing of it in potential files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from structures import SPECIES, graph_of, tiny_potential

from gdlphys import keys
from gdlphys.calculator import GDLCalculator
from gdlphys.models.files import load_potential, save_potential
from gdlphys.nn.edge_chunks import AUTO_CHUNK, AUTO_MIN_EDGES, chunk_size, rows_per_chunk


def _box(n_atoms: int = 24, seed: int = 0) -> Atoms:
    """Random atoms at about water's atom density in a small periodic cube."""
    rng = np.random.default_rng(seed)
    side = (n_atoms / 0.1) ** (1 / 3)
    return Atoms(rng.choice(SPECIES, size=n_atoms), rng.uniform(0, side, (n_atoms, 3)), cell=np.eye(3) * side, pbc=True)


@pytest.mark.parametrize("interaction", ["nequip", "mace"])
def test_chunked_matches_one_pass(interaction):
    atoms = _box()
    potential = tiny_potential(torch.float64, interaction=interaction)
    results = []
    for chunk in (0, 7):  # 7 edges: hundreds of chunks, the last one short
        calc = GDLCalculator(potential, edge_chunk=chunk)
        results.append((calc.get_potential_energy(atoms), calc.get_forces(atoms), calc.get_stress(atoms)))
    (e0, f0, s0), (e1, f1, s1) = results
    assert graph_of(atoms, potential.cutoff)[keys.EDGE_INDEX].shape[1] > 50 * 7
    assert e1 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, rtol=1e-10, atol=1e-10 * np.abs(f0).max())
    np.testing.assert_allclose(s1, s0, rtol=1e-10, atol=1e-10 * np.abs(s0).max())
    assert potential.edge_chunk is None, "the calculator set its own copy, not the caller's potential"


def test_chunked_training_gradients_match():
    """A chunk size set by hand also chunks in training: the force loss's parameter gradients
    (a double backward through the checkpoints) are those of one pass."""
    graph = graph_of(_box(12, seed=1), 3.5)
    grads = []
    for chunk in (0, 11):
        potential = tiny_potential(torch.float64, interaction="mace").train()
        potential.edge_chunk = chunk
        out = potential(graph, compute_forces=True)
        loss = out[keys.ENERGY].sum() + out[keys.FORCES].pow(2).sum()
        grads.append(torch.autograd.grad(loss, [p for p in potential.parameters() if p.requires_grad]))
    for one_pass, chunked in zip(*grads):
        torch.testing.assert_close(chunked, one_pass, rtol=1e-10, atol=1e-12)


def _saved_bytes(potential, graph) -> int:
    """Bytes that autograd keeps for the backward pass of one energy-and-forces call."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        potential(graph, compute_forces=True)
    return sum(storages.values())


@pytest.mark.parametrize("interaction", ["nequip", "mace"])
def test_chunks_keep_less_for_the_backward_pass(interaction):
    """Edges and atoms both go in chunks: a product basis keeps far more per atom than an edge."""
    potential = tiny_potential(torch.float32, interaction=interaction)
    graph = graph_of(_box(48, seed=2), potential.cutoff, torch.float32)
    one_pass = _saved_bytes(potential, graph)
    potential.edge_chunk = 64
    assert _saved_bytes(potential, graph) < 0.3 * one_pass


def test_automatic_setting():
    assert chunk_size(None, AUTO_MIN_EDGES, training=False) == 0
    assert chunk_size(None, AUTO_MIN_EDGES + 1, training=False) == AUTO_CHUNK
    assert chunk_size(None, 10 * AUTO_MIN_EDGES, training=True) == 0  # training batches keep one pass
    assert chunk_size(0, 10 * AUTO_MIN_EDGES, training=False) == 0
    assert chunk_size(100, 100, training=True) == 0  # one chunk would be all of them
    assert chunk_size(100, 101, training=True) == 100


def test_atoms_per_chunk_follow_the_edges():
    assert rows_per_chunk(0, 1000, 50_000) == 0  # edges in one pass: atoms too
    assert rows_per_chunk(8192, 100_000, 5_200_000) == 157  # the same share of the atoms as of the edges
    assert rows_per_chunk(7, 24, 400) == 1  # never zero atoms a chunk
    assert rows_per_chunk(64, 10, 0) == 0


@pytest.mark.parametrize("bad", [-1, 2.5, True, "64"])
def test_bad_edge_chunk_is_refused(bad):
    potential = tiny_potential()
    with pytest.raises(ValueError, match="edge_chunk"):
        potential.edge_chunk = bad
    with pytest.raises(ValueError, match="edge_chunk"):
        GDLCalculator(potential, edge_chunk=bad)


def test_edge_chunk_is_not_part_of_the_file(tmp_path):
    potential = tiny_potential()
    keys_before = set(potential.state_dict())
    potential.edge_chunk = 128
    assert set(potential.state_dict()) == keys_before
    loaded = load_potential(save_potential(potential, tmp_path / "p.pt"))
    assert loaded.edge_chunk is None
