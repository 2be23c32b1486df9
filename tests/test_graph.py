"""Radius graph against ASE's neighbour list (the oracle), edge vectors, and collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_cluster
from ase.neighborlist import primitive_neighbor_list
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gdlphys import keys
from gdlphys.graph import collate, edge_vectors, radius_graph
from gdlphys.graph.vesin_backend import _drop_rows

# float32 positions round differently from ASE's float64: pairs this close to the cutoff may differ
BOUNDARY_TOL = {torch.float32: 1e-4, torch.float64: 1e-9}


@pytest.fixture(params=["vesin", "torch-cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both searches on every device: the GPU's torch-cluster path is checked on CPU-only machines too."""
    return request.param


def ase_triples(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> set[tuple[int, ...]]:
    """(centre, source, *shift): ASE's i is our centre, its D = pos[j] - pos[i] + S @ cell is our vector."""
    i, j, shift = primitive_neighbor_list("ijS", pbc, cell, positions, cutoff, self_interaction=False)
    return {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), shift.tolist())}


def our_triples(edge_index: torch.Tensor, shifts: torch.Tensor) -> set[tuple[int, ...]]:
    assert edge_index.dtype == torch.long and edge_index.shape == (2, shifts.shape[0])
    assert torch.equal(shifts, shifts.round()), "shifts must be integer-valued"
    source, centre = edge_index.cpu().tolist()
    triples = [(c, s, *sh) for s, c, sh in zip(source, centre, shifts.cpu().round().long().tolist())]
    assert len(set(triples)) == len(triples), "duplicate edges"
    return set(triples)


def assert_same_edges(ours: set, reference: set, positions: np.ndarray, cell: np.ndarray, cutoff: float, tol: float):
    """Equal sets, except pairs within `tol` of the cutoff (rounding decides those)."""
    for centre, source, *shift in ours ^ reference:
        length = np.linalg.norm(positions[source] - positions[centre] + np.array(shift) @ cell)
        side = "missing" if (centre, source, *shift) in reference else "extra"
        assert abs(length - cutoff) < tol, f"{side} edge {source}->{centre} shift {shift}, length {length}"


def random_cell(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Triclinic cell, diagonally dominant so it is well conditioned."""
    lengths = rng.uniform(low, high, size=3)
    return lengths[:, None] * (np.eye(3) + rng.uniform(-0.25, 0.25, size=(3, 3)))


def check_against_ase(positions, cell, pbc, cutoff, dtype, device, backend="auto"):
    """Run radius_graph on one structure and compare with ASE."""
    pos = torch.tensor(positions, dtype=dtype, device=device)
    positions = pos.double().cpu().numpy()  # both sides see the same rounded inputs
    cell_ = torch.tensor(cell, dtype=dtype, device=device)[None]
    pbc_ = torch.tensor(pbc, device=device)[None]
    edge_index, shifts = radius_graph(pos, cutoff, cell=cell_, pbc=pbc_, backend=backend)
    assert edge_index.device == pos.device and shifts.device == pos.device and shifts.dtype == dtype
    # the models' own formula, in their dtype, puts every edge inside the cutoff
    batch = torch.zeros(len(pos), dtype=torch.long, device=device)
    lengths = edge_vectors(pos, edge_index, shifts, cell_, batch).norm(dim=1)
    assert bool((lengths < cutoff).all())
    reference = ase_triples(positions, cell, np.array(pbc), cutoff)
    assert_same_edges(our_triples(edge_index, shifts), reference, positions, cell, cutoff, BOUNDARY_TOL[dtype])
    return edge_index, shifts


def test_matches_ase_on_clusters(dtype, device, backend):
    rng = np.random.default_rng(0)
    positions = rng.uniform(-4.0, 4.0, size=(40, 3))
    edge_index, _ = check_against_ase(positions, np.eye(3) * 20.0, [False] * 3, 3.0, dtype, device, backend)
    # zero cell: what non-periodic structures carry in the graph dict
    zero = radius_graph(torch.tensor(positions, dtype=dtype, device=device), 3.0, backend=backend)[0]
    assert torch.equal(zero, edge_index)


@pytest.mark.parametrize("seed", range(8))
def test_matches_ase_on_triclinic_cells(seed, dtype, device, backend):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng, 2.0, 9.0)  # some cells are smaller than twice the cutoff
    frac = rng.uniform(-1.0, 2.0, size=(int(rng.integers(1, 12)), 3))  # outside the cell: wrapping matters
    pbc = rng.random(3) < 0.7
    check_against_ase(frac @ cell, cell, pbc, float(rng.uniform(1.5, 5.0)), dtype, device, backend)


@pytest.mark.parametrize(
    ("cell", "frac"),
    [
        (np.eye(3) * 2.5, [[0.1, 0.2, 0.3]]),
        ([[2.0, 0.0, 0.0], [1.2, 2.4, 0.0], [0.5, -0.7, 2.9]], [[0.0, 0.0, 0.0], [0.45, 0.5, 0.55]]),
        (np.eye(3) * 1.0, [[7.3, -4.1, 0.5]]),  # > 500 images of itself: the neighbour cap must grow
    ],
)
def test_small_cells_neighbour_their_own_images(cell, frac, dtype, device, backend):
    cell = np.array(cell, dtype=float)
    positions = np.array(frac) @ cell
    edge_index, shifts = check_against_ase(positions, cell, [True] * 3, 5.0, dtype, device, backend)
    own_images = (edge_index[0] == edge_index[1]) & (shifts != 0).any(dim=1)
    assert own_images.sum() > 0


def test_slab_and_wire_with_zero_vector_along_open_directions(dtype, device, backend):
    rng = np.random.default_rng(3)
    cell = np.array([[3.1, 0.0, 0.0], [1.2, 2.9, 0.0], [0.0, 0.0, 0.0]])
    positions = rng.uniform(-2.0, 6.0, size=(6, 3))
    check_against_ase(positions, cell, [True, True, False], 4.0, dtype, device, backend)
    check_against_ase(positions, np.diag([0.0, 0.0, 2.2]), [False, False, True], 4.0, dtype, device, backend)


def check_batch_against_ase(structures, cutoff, dtype, device, backend, permutation=None):
    """Run radius_graph on a batch of (positions, cell, pbc), atoms permuted, and compare each graph with ASE."""
    batch = np.concatenate([np.full(len(s[0]), g) for g, s in enumerate(structures)])
    positions = np.concatenate([s[0] for s in structures])
    if permutation is not None:
        positions, batch = positions[permutation], batch[permutation]
    pos = torch.tensor(positions, dtype=dtype, device=device)
    edge_index, shifts = radius_graph(
        pos,
        cutoff,
        batch=torch.tensor(batch, device=device),
        cell=torch.tensor(np.stack([s[1] for s in structures]), dtype=dtype, device=device),
        pbc=torch.tensor([s[2] for s in structures], device=device),
        backend=backend,
    )
    positions = pos.double().cpu().numpy()
    edge_index, shifts = edge_index.cpu(), shifts.cpu()
    assert (batch[edge_index[0]] == batch[edge_index[1]]).all()
    for g, (_, cell, pbc) in enumerate(structures):
        members = np.flatnonzero(batch == g)
        local = {int(a): n for n, a in enumerate(members)}
        mine = torch.tensor(batch[edge_index[1]] == g)
        triples = zip(*edge_index[:, mine].tolist(), shifts[mine].long().tolist())
        ours = {(local[c], local[s], *sh) for s, c, sh in triples}
        reference = ase_triples(positions[members], cell, np.array(pbc), cutoff)
        assert_same_edges(ours, reference, positions[members], cell, cutoff, BOUNDARY_TOL[dtype])


def test_batch_of_mixed_structures_unsorted(dtype, device, backend):
    rng = np.random.default_rng(1)
    small_cell = random_cell(rng, 2.0, 3.0)
    structures = [  # (positions, cell, pbc)
        (rng.uniform(-3, 3, (7, 3)), np.zeros((3, 3)), [False] * 3),
        (rng.uniform(-1, 2, (3, 3)) @ small_cell, small_cell, [True] * 3),
        (rng.uniform(0, 5, (5, 3)), np.diag([4.0, 4.5, 0.0]), [True, True, False]),
        (rng.uniform(-1, 6, (4, 3)), random_cell(rng, 4.0, 6.0), [True, False, True]),
    ]
    permutation = rng.permutation(sum(len(s[0]) for s in structures))  # atoms of a graph need not be contiguous
    check_batch_against_ase(structures, 4.0, dtype, device, backend, permutation)


def random_atoms(rng: np.random.Generator, n_atoms: int, cell: np.ndarray, low=-0.5, high=1.5) -> np.ndarray:
    """Cartesian positions of uniform random fractional coordinates in [low, high), mostly outside the cell."""
    return rng.uniform(low, high, size=(n_atoms, 3)) @ cell


def water_density_cell(rng: np.random.Generator, n_atoms: int) -> np.ndarray:
    """Triclinic cell holding n_atoms at ~0.1 atoms/Å^3 (liquid water)."""
    cell = random_cell(rng, 1.0, 1.0)
    return cell * (n_atoms / 0.1 / abs(np.linalg.det(cell))) ** (1 / 3)


@pytest.mark.parametrize("pbc", [[True] * 3, [True, False, True], [False] * 3], ids=["3d", "slab", "cluster"])
def test_matches_ase_on_thousands_of_atoms(pbc, dtype, device, backend):
    rng = np.random.default_rng(5)
    cell = water_density_cell(rng, 2000)
    check_against_ase(random_atoms(rng, 2000, cell), cell, pbc, 5.0, dtype, device, backend)


def test_thin_cell_of_thousands_of_atoms_neighbours_own_images(dtype, device, backend):
    rng = np.random.default_rng(6)
    cell = np.array([[95.0, 0.0, 0.0], [3.0, 96.0, 0.0], [0.4, -0.3, 2.2]])  # c is far shorter than the cutoff
    edge_index, shifts = check_against_ase(random_atoms(rng, 2000, cell), cell, [True] * 3, 5.0, dtype, device, backend)
    assert bool(((edge_index[0] == edge_index[1]) & (shifts[:, 2] != 0)).any())


def test_large_batch_of_mixed_structures(dtype, device, backend):
    rng = np.random.default_rng(7)
    cells = [water_density_cell(rng, n) for n in (1500, 800, 1200)]
    zero_open = cells[2] * np.array([[1.0], [1.0], [0.0]])  # open direction given as a zero row
    structures = [
        (random_atoms(rng, 1500, cells[0]), cells[0], [True] * 3),
        (random_atoms(rng, 800, cells[1], 0.0, 1.0), np.zeros((3, 3)), [False] * 3),
        (random_atoms(rng, 1200, cells[2]), zero_open, [True, True, False]),
        (random_atoms(rng, 5, np.eye(3) * 2.0), np.eye(3) * 2.0, [True] * 3),
    ]
    check_batch_against_ase(structures, 4.5, dtype, device, backend)  # graph after graph, as collate makes them


def test_float32_pairs_at_the_cutoff_are_cut_in_float32(device, backend):
    """A pair shorter than the cutoff in float64 but not in float32 is left out, as the model would measure it."""
    rng = np.random.default_rng(8)
    while True:  # a vector whose float32 length rounds up
        vector = rng.uniform(1.0, 2.0, size=3).astype(np.float32)
        exact = float(np.linalg.norm(vector.astype(np.float64)))
        rounded = float(torch.tensor(vector).norm())
        if rounded > exact:
            break
    cutoff = (exact + rounded) / 2.0
    cluster = rng.uniform(20.0, 24.0, size=(60, 3)).astype(np.float32)  # more pairs around the one that goes
    positions = torch.tensor(np.concatenate([np.zeros((1, 3), np.float32), vector[None], cluster]), device=device)
    edge_index, shifts = radius_graph(positions, cutoff, backend=backend)
    assert not bool(((edge_index[0] < 2) & (edge_index[1] < 2)).any())
    reference = ase_triples(positions.double().cpu().numpy()[2:], np.zeros((3, 3)), np.zeros(3, bool), cutoff)
    assert our_triples(edge_index - 2, shifts) == reference


def test_atoms_a_million_cells_away_and_tiny_cutoffs(dtype, device, backend):
    """Inputs past vesin's limits (int32 cell indices, cutoff >= 1e-6 Å) still get every neighbour."""
    cell = np.array([[3.0, 0.0, 0.0], [0.5, 3.2, 0.0], [0.2, 0.3, 2.9]])
    frac = np.array([[0.1 + 1e6, 0.2, 0.3], [0.4, 0.5 - 3e5, 0.6], [0.9, 0.1, 0.5]])
    check_against_ase(frac @ cell, cell, [True] * 3, 4.0, torch.float64, device, backend)
    positions = torch.tensor([[0.0, 0.0, 0.0], [1e-8, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype, device=device)
    assert radius_graph(positions[::2], 1e-7, backend=backend)[0].shape == (2, 0)
    with pytest.raises(ValueError, match="same place"):
        radius_graph(positions, 1e-7, backend=backend)


def test_drop_rows_matches_a_mask():
    rng = np.random.default_rng(9)
    for n_rows, n_dropped in [(10, 0), (10, 3), (10, 10), (1000, 7), (5, 1)]:
        rows = rng.choice(n_rows, size=n_dropped, replace=False)
        pairs, values = rng.integers(0, 99, size=(n_rows, 2)), rng.normal(size=(n_rows, 3))
        keep = np.ones(n_rows, dtype=bool)
        keep[rows] = False
        expected = {(*p, *v) for p, v in zip(pairs[keep].tolist(), values[keep].tolist())}
        n_kept = _drop_rows(rows, pairs, values)
        assert n_kept == keep.sum()
        assert {(*p, *v) for p, v in zip(pairs[:n_kept].tolist(), values[:n_kept].tolist())} == expected


def test_dense_clump_is_not_truncated(device, monkeypatch):
    rng = np.random.default_rng(2)
    n = 150
    direction = rng.normal(size=(n, 3))
    clump = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(0, 1.5, (n, 1))
    # far-away atoms make the box look dilute, so the first neighbour cap is far too small
    lonely = np.array([[-50.0, -50.0, -50.0], [50.0, 50.0, 50.0]])
    caps, radius = [], torch_cluster.radius

    def spying_radius(*args, max_num_neighbors, **kwargs):
        caps.append(max_num_neighbors)
        return radius(*args, max_num_neighbors=max_num_neighbors, **kwargs)

    monkeypatch.setattr(torch_cluster, "radius", spying_radius)
    positions = torch.tensor(np.concatenate([clump, lonely]), device=device)
    edge_index, _ = radius_graph(positions, 5.0, backend="torch-cluster")
    assert len(caps) > 1 and caps[0] < n - 1, "the cap-doubling path was not exercised"
    assert edge_index.shape[1] == n * (n - 1)  # brute force: every pair of the clump is closer than 3 Å
    assert torch.equal(torch.bincount(edge_index[1].cpu(), minlength=n + 2)[:n], torch.full((n,), n - 1))
    edge_index, _ = radius_graph(positions, 5.0, backend="vesin")  # vesin has no cap at all
    assert edge_index.shape[1] == n * (n - 1)
    assert torch.equal(torch.bincount(edge_index[1].cpu(), minlength=n + 2)[:n], torch.full((n,), n - 1))


def test_edge_vectors_are_short_and_differentiable(dtype, device):
    rng = np.random.default_rng(4)
    cell = torch.tensor(random_cell(rng, 3.0, 5.0), dtype=dtype, device=device)[None]
    positions = torch.tensor(rng.uniform(-2, 6, (6, 3)), dtype=dtype, device=device)
    batch = torch.zeros(6, dtype=torch.long, device=device)
    pbc = torch.tensor([[True, True, True]], device=device)
    edge_index, shifts = radius_graph(positions, 4.0, batch, cell, pbc)
    positions.requires_grad_(True)
    cell.requires_grad_(True)
    lengths = edge_vectors(positions, edge_index, shifts, cell, batch).norm(dim=1)
    assert edge_index.shape[1] > 0 and (lengths > 0).all() and (lengths < 4.0).all()
    lengths.sum().backward()
    assert positions.grad.abs().sum() > 0 and cell.grad.abs().sum() > 0
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(lambda p, c: edge_vectors(p, edge_index, shifts, c, batch), (positions, cell))


@pytest.mark.parametrize("backend", ["vesin", "torch-cluster"])
@settings(max_examples=25, deadline=None)
@given(
    lengths=arrays(np.float64, 3, elements=st.floats(1.0, 7.0)),
    shear=arrays(np.float64, (3, 3), elements=st.floats(-0.25, 0.25)),
    frac=arrays(np.float64, st.tuples(st.integers(0, 6), st.just(3)), elements=st.floats(-1.5, 2.5)),
    pbc=st.lists(st.booleans(), min_size=3, max_size=3),
    cutoff=st.floats(0.5, 4.0),
)
def test_property_matches_ase(backend, lengths, shear, frac, pbc, cutoff):
    cell = lengths[:, None] * (np.eye(3) + shear)
    distances = primitive_neighbor_list("d", pbc, cell, frac @ cell, cutoff, self_interaction=False)
    if (distances < 1e-6).any():  # an atom given twice (maybe a lattice vector apart) is an error
        with pytest.raises(ValueError, match="same place"):
            check_against_ase(frac @ cell, cell, pbc, cutoff, torch.float64, torch.device("cpu"), backend)
    else:
        check_against_ase(frac @ cell, cell, pbc, cutoff, torch.float64, torch.device("cpu"), backend)


def test_empty_and_single_atom(dtype, device, backend):
    for n, pbc in [(0, False), (1, False), (1, True)]:
        edge_index, shifts = radius_graph(
            torch.zeros(n, 3, dtype=dtype, device=device),
            3.0,
            cell=torch.eye(3, dtype=dtype, device=device)[None] * 10.0,
            pbc=torch.full((1, 3), pbc, device=device),
            backend=backend,
        )
        assert edge_index.shape == (2, 0) and edge_index.dtype == torch.long
        assert shifts.shape == (0, 3) and shifts.dtype == dtype and shifts.device == edge_index.device == device


@pytest.mark.parametrize("backend", ["vesin", "torch-cluster"])
def test_bad_inputs_raise_clear_errors(backend):
    positions = torch.rand(5, 3)
    positions[3, 1] = float("nan")
    with pytest.raises(ValueError, match="atom 3"):
        radius_graph(positions, 3.0)
    with pytest.raises(ValueError, match=r"\[n_atoms, 3\]"):
        radius_graph(torch.rand(5, 2), 3.0)
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(torch.rand(5, 3), 0.0)
    with pytest.raises(ValueError, match="no cell"):
        radius_graph(torch.rand(5, 3), 3.0, pbc=torch.ones(1, 3, dtype=torch.bool))
    flat = torch.stack([torch.eye(3) * 4.0, torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [3.0, 3.0, 0]])])
    with pytest.raises(ValueError, match="graph 1.*degenerate"):
        radius_graph(torch.rand(4, 3), 3.0, torch.tensor([0, 0, 1, 1]), flat, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="atoms (1 and 2|2 and 1) sit at the same place"):
        radius_graph(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]]), 3.0, backend=backend)
    with pytest.raises(ValueError, match="atoms (0 and 3|3 and 0) sit at the same place"):  # in a batch, unsorted
        radius_graph(
            torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [3.0, 0, 0], [3.0, 0, 0]]), 3.0, torch.tensor([1, 0, 0, 1]),
            torch.eye(3).expand(2, 3, 3) * 3.0, torch.tensor([[True, True, True], [True, True, True]]),
            backend=backend,
        )  # fmt: skip
    with pytest.raises(ValueError, match="backend"):
        radius_graph(torch.rand(5, 3), 3.0, backend="kd-tree")


def test_zero_open_vector_is_not_degenerate():
    cell = torch.tensor([[[3.0, 0, 0], [0, 3.0, 0], [0, 0, 0]]])
    radius_graph(torch.rand(3, 3), 3.0, cell=cell, pbc=torch.tensor([[True, True, False]]))


def single_graph(n_atoms: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cell = torch.eye(3)[None] * 3.0
    pbc = torch.ones(1, 3, dtype=torch.bool)
    positions = torch.rand(n_atoms, 3, generator=generator) * 3.0
    edge_index, shifts = radius_graph(positions, 2.5, cell=cell, pbc=pbc)
    return {
        keys.POSITIONS: positions,
        keys.ATOMIC_NUMBERS: torch.randint(1, 9, (n_atoms,), generator=generator),
        keys.CELL: cell,
        keys.PBC: pbc,
        keys.EDGE_INDEX: edge_index,
        keys.EDGE_SHIFTS: shifts,
        keys.ENERGY: torch.rand(1, generator=generator),
        keys.FORCES: torch.rand(n_atoms, 3, generator=generator),
    }


def test_collate_offsets_and_batch_vectors():
    graphs = [single_graph(n, seed) for seed, n in enumerate([3, 1, 4])]
    batched = collate(graphs)
    assert batched[keys.BATCH].tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert batched[keys.PTR].tolist() == [0, 3, 4, 8]
    assert batched[keys.NUM_ATOMS].tolist() == [3, 1, 4]
    assert batched[keys.CELL].shape == (3, 3, 3) and batched[keys.ENERGY].shape == (3,)
    assert torch.equal(batched[keys.FORCES], torch.cat([g[keys.FORCES] for g in graphs]))
    expected = torch.cat([g[keys.EDGE_INDEX] + offset for g, offset in zip(graphs, [0, 3, 4])], dim=1)
    assert torch.equal(batched[keys.EDGE_INDEX], expected)
    # the batched graph is the graph of the batch
    edge_index, shifts = radius_graph(
        batched[keys.POSITIONS], 2.5, batched[keys.BATCH], batched[keys.CELL], batched[keys.PBC]
    )
    assert our_triples(edge_index, shifts) == our_triples(batched[keys.EDGE_INDEX], batched[keys.EDGE_SHIFTS])


def test_collate_rejects_missing_and_misshapen_fields():
    graphs = [single_graph(2, 0), single_graph(3, 1)]
    del graphs[1][keys.ENERGY]
    with pytest.raises(ValueError, match=keys.ENERGY):
        collate(graphs)
    graphs = [single_graph(2, 0), single_graph(3, 1)]
    graphs[0][keys.ENERGY] = torch.tensor(1.0)
    with pytest.raises(ValueError, match=keys.ENERGY):
        collate(graphs)
    with pytest.raises(ValueError, match="unknown|per atom"):
        collate([{**single_graph(2, 0), "mystery": torch.zeros(2)}])
