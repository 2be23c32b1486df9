"""Fine-tuning: species surgery is exact, reference energies refit, a short run with replay and freezing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gdlphys import keys
from gdlphys.cli import main
from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.models.files import load_potential
from gdlphys.models.potential import Potential, UnknownElementError
from gdlphys.models.surgery import grow_species, refit_reference_energies
from gdlphys.train.config import FitConfig
from gdlphys.train.finetune import frozen_parameter_names
from gdlphys.train.run import train_potential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structures import batch_of, random_crystal, random_molecule, tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
OLD = [8, 1, 6]  # deliberately unsorted: old indices must survive surgery


def _hco_potential(parity: bool = False) -> Potential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        potential = Potential(tiny_config(parity=parity), OLD, [-7.0, -45.0, -15.0], 10.0, scale=0.7)
        with torch.no_grad():
            potential.model[-1].scale.mul_(torch.tensor([0.8, 1.3, 1.1]))
    return potential.double().eval()


@pytest.mark.parametrize("parity", [False, True])
def test_grown_potential_predicts_old_elements_exactly(parity):
    parent = _hco_potential(parity)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    grown = grow_species(parent, [7, 9])
    assert grown.species == (8, 1, 6, 7, 9)
    for structures in (
        [random_molecule(8, seed=s, species=OLD) for s in range(3)],
        [random_crystal(4, seed=0, species=OLD), random_crystal(5, seed=1, species=OLD)],
    ):
        periodic = bool(structures[0].pbc.all())
        batch = batch_of(structures, parent.cutoff)
        want = parent(batch, compute_stress=periodic)
        got = grown(batch, compute_stress=periodic)
        for key in (keys.ENERGY, keys.ATOMIC_ENERGIES, keys.FORCES) + ((keys.STRESS,) if periodic else ()):
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-10)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # the input is untouched


def test_grown_potential_accepts_the_new_element():
    parent = _hco_potential()
    methylamine_like = random_molecule(7, seed=4, species=[1, 6, 7])
    methylamine_like.numbers[0] = 7
    batch = batch_of([methylamine_like], parent.cutoff)
    with pytest.raises(UnknownElementError, match="N"):
        parent(batch)
    out = grow_species(parent, [7])(batch)
    assert torch.isfinite(out[keys.ENERGY]).all() and torch.isfinite(out[keys.FORCES]).all()


def _labelled(potential: Potential, structures, offsets: dict[int, float]):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for atoms in structures:
        energy = float(potential(batch_of([atoms], potential.cutoff))[keys.ENERGY].detach())
        energy += sum(offsets.get(int(z), 0.0) for z in atoms.numbers)
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        frames.append(atoms)
    return frames


def test_refit_recovers_per_element_offsets():
    grown = grow_species(_hco_potential(), [7])
    structures = [random_molecule(7, seed=s, species=[1, 6, 7, 8]) for s in range(12)]
    offsets = {1: 1.234, 7: -0.5}
    refit = refit_reference_energies(grown, _labelled(grown, structures, offsets), new_species=[7])
    moved = dict(zip(refit.species, np.subtract(refit.new, refit.old)))
    for z in (1, 6, 7, 8):
        assert moved[z] == pytest.approx(offsets.get(z, 0.0), abs=1e-6)
    assert refit.residual_rms_per_atom_after < 1e-6 < refit.residual_rms_per_atom_before


def test_refit_on_one_composition_moves_only_the_new_element():
    grown = grow_species(_hco_potential(), [7])
    template = random_molecule(7, seed=2, species=[1, 6, 7])
    structures = []
    for s in range(4):
        atoms = template.copy()
        atoms.positions += np.random.default_rng(s).normal(scale=0.05, size=atoms.positions.shape)
        structures.append(atoms)
    n_nitrogen = int((template.numbers == 7).sum())
    assert n_nitrogen >= 1
    refit = refit_reference_energies(grown, _labelled(grown, structures, {7: 2.0}), new_species=[7])
    moved = dict(zip(refit.species, np.subtract(refit.new, refit.old)))
    assert moved[7] == pytest.approx(2.0, abs=1e-5)
    assert max(abs(moved[z]) for z in (1, 6, 8)) < 1e-5


def test_bad_freeze_spec_is_a_clear_error():
    potential = _hco_potential()
    assert frozen_parameter_names(potential, "embedding") == ["model.0.linear.weight"]
    assert len(frozen_parameter_names(potential, "interaction")) > len(frozen_parameter_names(potential, "interaction.0"))
    with pytest.raises(ValueError, match="'interaction.7' matches no parameter.*embedding"):
        frozen_parameter_names(potential, "embedding,interaction.7")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gdlphys.data.label import label_smiles

    folder = tmp_path_factory.mktemp("finetune-data")
    ethanol = folder / "ethanol.h5"
    write_hdf5(ethanol, read_hdf5(ETHANOL, index=slice(0, 24)), method="GFN2-xTB")
    methylamine = label_smiles(["CN"], folder / "methylamine.h5", frames=8, stride=2, equilibration_steps=20, progress=False)
    assert not methylamine.failures
    parent = train_potential(
        ethanol, folder / "parent", model=tiny_config(cutoff=4.0, l_max=1, num_layers=1),
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.01), trainer={"accelerator": "cpu"},
        max_epochs=2, progress=False,
    )
    return {"ethanol": ethanol, "methylamine": methylamine.path, "parent": parent.run_dir}


def test_finetune_with_replay_learns_the_new_element(data, tmp_path, capsys):
    run = tmp_path / "ft"
    argv = [
        "finetune", str(data["parent"]), "--train", str(data["methylamine"]), "--replay", str(data["ethanol"]),
        "--replay-fraction", "0.3", "--valid-fraction", "0.25", "--batch-size", "4", "--lr", "0.005",
        "--max-epochs", "2", "--accelerator", "cpu", "--quiet", "-o", str(run),
    ]
    assert main(argv) == 0
    assert "force MAE" in capsys.readouterr().err
    for name in ("potential.pt", "finetune.json", "forgetting.png", "learning_curve.png", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    tuned = load_potential(run)
    assert tuned.species == (1, 6, 8, 7)
    summary = json.loads((run / "finetune.json").read_text())
    assert summary["new_species"] == [7] and summary["replay"]["frames"] == 3  # 0.3 / 0.7 * 6 new frames
    assert tuned.metadata["reference_energies"]["new"] == pytest.approx(tuned.reference_energies.tolist(), rel=1e-6)
    errors = summary["errors"]
    assert errors["new"]["finetuned"]["forces_mae"] < errors["new"]["start"]["forces_mae"]
    assert set(errors["original"]) == {"parent", "start", "finetuned"}
    # surgery alone does not change the original domain's forces
    assert errors["original"]["start"]["forces_mae"] == pytest.approx(errors["original"]["parent"]["forces_mae"], rel=1e-5)


def test_frozen_parts_stay_bit_identical(data, tmp_path):
    from gdlphys.train.finetune import finetune_potential

    parent = load_potential(data["parent"])
    result = finetune_potential(
        parent, data["methylamine"], tmp_path / "frozen", freeze="embedding,interaction.0",
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.005), trainer={"accelerator": "cpu"},
        max_epochs=1, progress=False,
    )
    start = grow_species(parent, [7]).state_dict()
    tuned = load_potential(result.potential_path).state_dict()
    assert result.frozen and all(torch.equal(tuned[name], start[name]) for name in result.frozen)
    trainable = [n for n in start if n.endswith("linear_2.weight")]
    assert trainable and not torch.equal(tuned[trainable[0]], start[trainable[0]])


def test_finetune_cli_rejects_a_bad_freeze_spec_before_running(data, tmp_path, capsys):
    run = tmp_path / "never"
    argv = ["finetune", str(data["parent"]), "--train", str(data["methylamine"]), "--freeze", "embeding", "-o", str(run)]
    assert main(argv) == 1
    assert "'embeding' matches no parameter" in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.skipif(importlib.util.find_spec("pyscf") is None, reason="PySCF not installed (pip install gdlphys[dft])")
def test_small_dft_recipe_labels_water(tmp_path):
    spec = importlib.util.spec_from_file_location("small_dft_recipe", ROOT / "datasets" / "small-dft" / "recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assert recipe.main(
        ["--smiles", "O", "--frames", "2", "--test-frames", "0", "--stride", "2", "--equilibration-steps", "10", "--output", str(tmp_path)]
    ) == 0
    frames = read_hdf5(tmp_path / "train.h5")
    assert len(frames) == 2
    energy, forces = frames[0].get_potential_energy(), frames[0].get_forces()
    assert -2090 < energy < -2070  # PBE/def2-SVP water is about -76.3 Hartree
    assert forces.shape == (3, 3) and np.abs(forces.sum(axis=0)).max() < 1e-2  # no net force
