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
from gdlphys.models.surgery import (
    analogue_element,
    group_and_period,
    grow_species,
    refit_reference_energies,
    species_entry_masks,
)
from gdlphys.train.config import FitConfig
from gdlphys.train.finetune import frozen_parameter_names
from gdlphys.train.finetune_task import FinetuneTask
from gdlphys.train.replay import find_training_data, resolve_replay
from gdlphys.train.run import train_potential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structures import batch_of, random_crystal, random_molecule, tiny_config

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
OLD = [8, 1, 6]  # deliberately unsorted: old indices must survive surgery


def _hco_potential(parity: bool = False, interaction: str = "nequip") -> Potential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        config = tiny_config(parity=parity, interaction=interaction)
        potential = Potential(config, OLD, [-7.0, -45.0, -15.0], 10.0, scale=0.7)
        with torch.no_grad():
            potential.model[-1].scale.mul_(torch.tensor([0.8, 1.3, 1.1]))
    return potential.double().eval()


@pytest.mark.parametrize("interaction", ["nequip", "mace"])
@pytest.mark.parametrize("parity", [False, True])
def test_grown_potential_predicts_old_elements_exactly(parity, interaction):
    parent = _hco_potential(parity, interaction)
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


def test_analogue_element_follows_the_periodic_table():
    organic = [1, 6, 7, 8, 9, 16, 17]  # H C N O F S Cl
    assert group_and_period(15) == (15, 3) and group_and_period(35) == (17, 4) and group_and_period(79) == (11, 6)
    assert group_and_period(58) == (3, 6)  # a lanthanide
    # same group, nearest period: P like N, Br and I like Cl, Se like S, Si like C
    assert [analogue_element(z, organic) for z in (15, 35, 53, 34, 14)] == [7, 17, 17, 16, 6]
    assert analogue_element(5, organic) == 6  # B: no group-13 element known; C is its period neighbour
    assert analogue_element(26, organic) is None  # Fe: nothing alike, the mean element it is
    assert analogue_element(7, [1, 6, 8]) == 8  # N between C and O: the heavier group on a tie
    with pytest.raises(ValueError, match="1..118"):
        group_and_period(0)


@pytest.mark.parametrize("init", ["analogue", "mean"])
def test_new_element_starts_as_its_analogue_or_the_mean_element(init):
    parent = _hco_potential()
    grown = grow_species(parent, [16], init=init)  # S: O's group
    s_like = random_molecule(6, seed=5, species=[1, 6, 8])
    s_like.numbers[0] = 8
    o_like = s_like.copy()
    s_like.numbers[0] = 16
    out_s = grown(batch_of([s_like], grown.cutoff))
    out_o = grown(batch_of([o_like], grown.cutoff))
    reference = dict(zip(grown.species, grown.reference_energies.tolist()))
    if init == "analogue":  # S starts as a copy of O: the same energy and forces
        torch.testing.assert_close(out_s[keys.FORCES], out_o[keys.FORCES], rtol=0, atol=1e-10)
        torch.testing.assert_close(out_s[keys.ENERGY], out_o[keys.ENERGY], rtol=0, atol=1e-10)
        assert reference[16] == reference[8]
    else:
        assert not torch.allclose(out_s[keys.FORCES], out_o[keys.FORCES], atol=1e-6)
        assert reference[16] == pytest.approx(np.mean([reference[z] for z in OLD]))
    with pytest.raises(ValueError, match="init must be one of"):
        grow_species(parent, [16], init="zeros")


@pytest.mark.parametrize("interaction", ["nequip", "mace"])
def test_new_element_entries_are_exactly_what_old_structures_never_see(interaction):
    grown = grow_species(_hco_potential(interaction=interaction), [7])
    masks = species_entry_masks(grown, [7])
    product = [n for n in masks if ".product.weights." in n]
    assert len(product) == (2 * 3 if interaction == "mace" else 0)  # two blocks, one weight tensor per output irrep
    assert set(masks) - set(product) == {"model.embedding.linear.weight", "model.scale_shift.scale"} | {
        n for n in masks if n.endswith("self_connection.weight")
    } and sum(n.endswith("self_connection.weight") for n in masks) == 2
    old_only = batch_of([random_molecule(8, seed=s, species=OLD) for s in range(3)], grown.cutoff)
    want = grown(old_only)
    touched = grow_species(_hco_potential(interaction=interaction), [7])
    with torch.no_grad():
        for name, parameter in touched.named_parameters():
            if name in masks:
                parameter[masks[name]] += 0.5  # only N's entries
    got = touched(old_only)
    for key in (keys.ENERGY, keys.FORCES):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-10)
    for name in ["model.embedding.linear.weight", *product[:1]]:
        changed = grow_species(_hco_potential(interaction=interaction), [7])
        with torch.no_grad():  # an entry outside the masks does change them
            changed.get_parameter(name)[~masks[name]] += 0.5
        assert not torch.allclose(changed(old_only)[keys.ENERGY], want[keys.ENERGY]), name


def _step(task: FinetuneTask, batch) -> None:
    """One optimiser step the way Lightning takes it (hooks included), without a Trainer."""
    optimizer = torch.optim.AdamW([p for p in task.potential.parameters() if p.requires_grad], lr=0.05)
    pred = task.potential(batch, compute_forces=True, create_graph=True)
    loss = ((pred[keys.FORCES] - batch[keys.FORCES]) ** 2).mean() + ((pred[keys.ENERGY] - batch[keys.ENERGY]) ** 2).mean()
    if task.anchor_weight > 0:
        loss = loss + task.anchor_weight * task.anchor_penalty()
    loss.backward()
    task.on_before_optimizer_step(optimizer)
    optimizer.step()
    task.slow_old_entries()
    task.restore_frozen_entries()


def _nitrogen_batch(potential: Potential):
    structures = [random_molecule(7, seed=s, species=[1, 6, 7, 8]) for s in range(3)]
    batch = batch_of(structures, potential.cutoff)
    batch[keys.ENERGY] = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batch[keys.FORCES] = torch.randn(batch[keys.POSITIONS].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return batch


@pytest.mark.parametrize("how", ["freeze", "old_lr_factor=0"])
def test_frozen_per_species_parts_still_teach_the_new_element(how):
    grown = grow_species(_hco_potential(), [7])
    masks = species_entry_masks(grown, [7])
    start = {k: v.clone() for k, v in grown.state_dict().items()}
    if how == "freeze":
        frozen = frozen_parameter_names(grown, "embedding,interaction,scale_shift")
        task = FinetuneTask(grown, FitConfig(ema_decay=0.0), frozen, masks)
    else:
        task = FinetuneTask(grown, FitConfig(ema_decay=0.0), (), masks, old_lr_factor=0.0)
    assert "model.embedding.linear.weight" in task.partly_frozen and "model.interaction_0.linear_in.weight" in task.fully_frozen
    for _ in range(2):
        _step(task, _nitrogen_batch(grown))
    tuned = grown.state_dict()
    for name, mask in masks.items():
        assert torch.equal(tuned[name][~mask], start[name][~mask]), name  # old elements' entries: bit-identical
        assert not torch.equal(tuned[name][mask], start[name][mask]), name  # the new element learns
    for name in task.fully_frozen:
        assert torch.equal(tuned[name], start[name]), name


@pytest.mark.parametrize("factor, warmup, first_step", [(0.1, 0, 0.1), (1.0, 4, 0.25), (0.5, 2, 0.25)])
def test_old_lr_factor_and_warmup_scale_the_steps_of_old_entries_only(factor, warmup, first_step):
    def run(factor: float, warmup: int = 0) -> dict[str, torch.Tensor]:
        grown = grow_species(_hco_potential(), [7])
        task = FinetuneTask(grown, FitConfig(ema_decay=0.0), (), species_entry_masks(grown, [7]), old_lr_factor=factor,
                            old_lr_warmup=warmup)
        _step(task, _nitrogen_batch(grown))
        return grown.state_dict()

    start = grow_species(_hco_potential(), [7]).state_dict()
    full, slow = run(1.0), run(factor, warmup)
    masks = species_entry_masks(grow_species(_hco_potential(), [7]), [7])
    radial = "model.interaction_0.radial.layer1.weight"
    torch.testing.assert_close(slow[radial] - start[radial], first_step * (full[radial] - start[radial]))
    name = "model.embedding.linear.weight"
    torch.testing.assert_close(slow[name][masks[name]], full[name][masks[name]])  # the new element's row: full steps


def test_anchor_penalty_pulls_old_weights_not_new_entries():
    grown = grow_species(_hco_potential(), [7])
    masks = species_entry_masks(grown, [7])
    task = FinetuneTask(grown, FitConfig(ema_decay=0.0), (), masks, anchor_weight=1.0)
    assert float(task.anchor_penalty().detach()) == 0.0
    with torch.no_grad():
        grown.model[0].linear.weight[masks["model.embedding.linear.weight"]] += 1.0
    assert float(task.anchor_penalty().detach()) == 0.0  # the new element's entries are free
    with torch.no_grad():
        grown.model[0].linear.weight[~masks["model.embedding.linear.weight"]] += 1.0
    n_old = int((~masks["model.embedding.linear.weight"]).sum())
    n_anchored = sum(int((~masks[n]).sum()) if n in masks else p.numel() for n, p in grown.named_parameters())
    assert float(task.anchor_penalty().detach()) == pytest.approx(n_old / n_anchored)  # a mean over the old entries


def test_replay_weight_weights_only_the_replayed_frames():
    from gdlphys.train.system import PotentialTask

    grown = grow_species(_hco_potential(), [7])
    batch = _nitrogen_batch(grown)
    plain = PotentialTask(grown, FitConfig(ema_decay=0.0))
    want_parts = plain._loss(plain._predict(grown, dict(batch), training=False), batch)
    weighted = FinetuneTask(grown, FitConfig(ema_decay=0.0), (), species_entry_masks(grown, [7]), replay_weight=3.0)
    replay = torch.tensor([False, True, False])
    got = weighted.training_step({**batch, keys.REPLAY: replay}, 0)
    pred = plain._predict(grown, dict(batch), training=False)
    n = batch[keys.NUM_ATOMS].double()
    w = torch.tensor([1.0, 3.0, 1.0], dtype=torch.float64)
    energy = torch.mean(w * ((pred[keys.ENERGY] - batch[keys.ENERGY]) / n) ** 2)
    forces = torch.mean(w[batch[keys.BATCH]].unsqueeze(-1) * (pred[keys.FORCES] - batch[keys.FORCES]) ** 2)
    torch.testing.assert_close(got, energy + forces)
    nothing_replayed = weighted.training_step({**batch, keys.REPLAY: torch.zeros(3, dtype=torch.bool)}, 0)
    torch.testing.assert_close(nothing_replayed, want_parts["loss"])
    forces_only = FinetuneTask(
        grown, FitConfig(ema_decay=0.0), (), species_entry_masks(grown, [7]), replay_weight=3.0, replay_energies=False
    )  # replay at another level of theory: its energies stay out of the loss
    got = forces_only.training_step({**batch, keys.REPLAY: replay}, 0)
    energy = torch.mean(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) * ((pred[keys.ENERGY] - batch[keys.ENERGY]) / n) ** 2)
    torch.testing.assert_close(got, energy + forces)


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
    assert frozen_parameter_names(potential, "embedding") == ["model.embedding.linear.weight"]
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
        ethanol, folder / "parent", model=tiny_config(cutoff=4.0, l_max=1, num_layers=1, interaction="nequip"),  # one block: every weight reaches the energy
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.01), trainer={"accelerator": "cpu"},
        max_epochs=2, progress=False,
    )
    dipole_parent = train_potential(
        ethanol, folder / "dipole-parent", model=tiny_config(cutoff=4.0, l_max=1, num_layers=1, dipole=True),
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.01), trainer={"accelerator": "cpu"},
        max_epochs=1, progress=False,
    )
    ethanol_no_dipole = folder / "ethanol-no-dipole.h5"
    frames = read_hdf5(ethanol)
    for frame in frames:
        del frame.calc.results["dipole"]
    write_hdf5(ethanol_no_dipole, frames, method="GFN2-xTB")
    return {"ethanol": ethanol, "methylamine": methylamine.path, "parent": parent.run_dir,
            "dipole_parent": dipole_parent.run_dir, "ethanol_no_dipole": ethanol_no_dipole}


def test_finetune_with_replay_learns_the_new_element(data, tmp_path, capsys):
    run = tmp_path / "ft"
    argv = [
        "finetune", str(data["parent"]), "--train", str(data["methylamine"]), "--replay", str(data["ethanol"]),
        "--replay-fraction", "0.3", "--valid-fraction", "0.25", "--batch-size", "4", "--lr", "0.005",
        "--old-lr-warmup", "0",  # a handful of steps here: no warm-up, or the old weights would not move at all
        "--max-epochs", "2", "--accelerator", "cpu", "--quiet", "-o", str(run),
    ]
    assert main(argv) == 0
    assert "force MAE" in capsys.readouterr().err
    for name in ("potential.pt", "finetune.json", "card.md", "forgetting.png", "learning_curve.png", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    card = (run / "card.md").read_text()
    assert "| N |" in card and "refitted by least squares" in card and "original" in card
    tuned = load_potential(run)
    assert tuned.species == (1, 6, 8, 7)
    summary = json.loads((run / "finetune.json").read_text())
    assert summary["new_species"] == [7] and summary["replay"]["frames_per_epoch"] == 3  # 0.3 / 0.7 * 6 new frames
    # replay and new frames are both GFN2-xTB: one refit of the reference energies on both, energies trained on both
    assert summary["replay"]["method"] == "GFN2-xTB" and summary["replay"]["energies_trained"]
    assert tuned.metadata["reference_energies"]["new"] == pytest.approx(tuned.reference_energies.tolist(), rel=1e-6)
    errors = summary["errors"]
    assert errors["new"]["finetuned"]["forces_mae"] < errors["new"]["start"]["forces_mae"]
    assert set(errors["original"]) == {"parent", "start", "finetuned"}
    # surgery alone does not change the original domain's forces
    assert errors["original"]["start"]["forces_mae"] == pytest.approx(errors["original"]["parent"]["forces_mae"], rel=1e-5)


def test_frozen_parts_stay_bit_identical_but_the_new_element_learns(data, tmp_path):
    from gdlphys.train.finetune import FinetuneConfig, finetune_potential

    parent = load_potential(data["parent"])
    result = finetune_potential(
        parent, data["methylamine"], tmp_path / "frozen", config=FinetuneConfig(freeze="embedding,interaction.0"),
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.005), trainer={"accelerator": "cpu"},
        max_epochs=1, progress=False,
    )
    grown = grow_species(parent, [7])
    start, masks = grown.state_dict(), species_entry_masks(grown, [7])
    tuned = load_potential(result.potential_path).state_dict()
    summary = json.loads((result.run_dir / "finetune.json").read_text())
    partly, fully = summary["frozen_except_new_elements"], summary["frozen"]
    assert "model.embedding.linear.weight" in partly and fully
    for name in fully:
        assert torch.equal(tuned[name], start[name]), name
    for name in partly:
        assert torch.equal(tuned[name][~masks[name]], start[name][~masks[name]]), name
        assert not torch.equal(tuned[name][masks[name]], start[name][masks[name]]), name
    trainable = [n for n in start if n.endswith("linear_2.weight")]
    assert trainable and not torch.equal(tuned[trainable[0]], start[trainable[0]])


def test_training_batches_mark_the_replayed_frames(data):
    from gdlphys.train.replay import ReplayDataModule

    module = ReplayDataModule(
        data["methylamine"], cutoff=4.0, batch_size=4, valid_fraction=0.25, replay=data["ethanol"], replay_fraction=0.3, hold_out=4,
    )
    module.setup("fit")
    assert len(module.new_train_set) == 6 and len(module.replay_set) == 20 and len(module.replay_held_out) == 4
    loader = module.train_dataloader()
    drawn = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        indices = list(loader.sampler)
        assert sorted(i for i in indices if i < 6) == list(range(6))  # every new frame, once
        drawn.append(sorted(i for i in indices if i >= 6))
        assert len(drawn[-1]) == module.replay_per_epoch == 3  # 0.3 / 0.7 * 6 replay frames per epoch
        marks = torch.cat([batch[keys.REPLAY] for batch in loader])
        assert int(marks.sum()) == 3 and len(marks) == 9
    assert drawn[0] != drawn[1] or drawn[1] != drawn[2]  # drawn afresh each epoch
    loader.sampler.set_epoch(1)
    assert sorted(i for i in loader.sampler if i >= 6) == drawn[1]  # ... as a function of the epoch
    batch = next(iter(loader))
    is_ethanol = torch.stack([(batch[keys.ATOMIC_NUMBERS][batch[keys.BATCH] == g] == 8).any() for g in range(len(batch[keys.REPLAY]))])
    assert torch.equal(is_ethanol, batch[keys.REPLAY])  # the replayed frames are the ethanol ones


def test_replay_is_found_by_hash_or_made_from_the_original_test_by_the_parent(data, tmp_path):
    parent = load_potential(data["parent"])
    assert find_training_data(parent).resolve() == Path(data["ethanol"]).resolve()
    relabel = resolve_replay(parent, tmp_path, labels="parent")
    assert relabel.origin == "parent training data" and relabel.labels == "parent"
    frames = read_hdf5(relabel.path)
    want = parent(batch_of(frames[:2], parent.cutoff, dtype=parent.dtype), compute_forces=True)
    got = np.concatenate([frames[0].get_forces(), frames[1].get_forces()])
    np.testing.assert_allclose(got, want[keys.FORCES].detach().numpy(), atol=1e-5)

    parent.metadata = {}  # no record of the training data: the original-domain test frames, split in two
    source = resolve_replay(parent, tmp_path / "split", original_test=data["ethanol"])
    assert source.origin == "original-test structures" and source.labels == "parent"
    n = len(read_hdf5(data["ethanol"]))
    assert len(read_hdf5(source.path)) + len(read_hdf5(source.original_test)) == n
    assert resolve_replay(parent, tmp_path / "none").path is None


def test_default_batch_follows_the_new_data_atoms_not_the_parent(data, tmp_path):
    """The parent recorded 4 frames a step of 9-atom ethanol; methylamine (7 atoms) fine-tunes with
    gdlphys train's rule on its own frames: ATOMS_PER_BATCH atoms a step."""
    from gdlphys.train.config import ATOMS_PER_BATCH
    from gdlphys.train.finetune import default_finetune_fit, prepare_finetune

    parent = load_potential(data["parent"])
    assert parent.metadata["fit"]["batch_size"] == 4 and default_finetune_fit(parent).batch_size is None
    setup = prepare_finetune(parent, data["methylamine"], tmp_path, original_test=data["ethanol"], progress=False)
    atoms = np.mean([len(a) for a in read_hdf5(data["methylamine"])])
    assert setup.task.fit.batch_size == round(ATOMS_PER_BATCH / atoms) != 4
    given = FitConfig(**{**default_finetune_fit(parent).to_dict(), "batch_size": 3})
    assert prepare_finetune(parent, data["methylamine"], tmp_path / "given", original_test=data["ethanol"], fit=given,
                            progress=False).task.fit.batch_size == 3


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


def test_finetune_onto_dft_blanks_original_energies_of_the_other_theory(data, tmp_path):
    """Shipped PBE/def2-SVP frames onto an xTB parent: xTB energies cannot be compared with the
    refitted (DFT) reference energies, so the original domain's energy errors are left blank."""
    dft = tmp_path / "dft.h5"
    write_hdf5(dft, read_hdf5(ROOT / "datasets" / "small-dft" / "train.h5", index=slice(0, 200, 16)), method="PBE/def2-SVP")
    run = tmp_path / "ft"
    argv = ["finetune", str(data["parent"]), "--train", str(dft), "--replay", str(data["ethanol"]),
            "--valid-fraction", "0.25", "--batch-size", "4", "--max-epochs", "1", "--accelerator", "cpu",
            "--quiet", "-o", str(run)]
    assert main(argv) == 0
    summary = json.loads((run / "finetune.json").read_text())
    assert not summary["replay"]["energies_trained"]  # xTB replay rehearses forces only
    original = summary["errors"]["original"]
    assert original["parent"]["energy_per_atom_mae"] is not None
    assert original["start"]["energy_per_atom_mae"] is None and original["finetuned"]["energy_per_atom_mae"] is None
    assert original["finetuned"]["forces_mae"] > 0
    refit = summary["reference_energies"]
    assert min(abs(a - b) for a, b in zip(refit["old"], refit["new"])) > 1.0  # PBE lies eV per atom from xTB


def test_replay_weight_rises_with_forgetting_and_falls_back():
    from torch.utils.data import Subset

    from gdlphys.data.datamodule import GraphDataset
    from gdlphys.train.finetune import dataset_errors

    grown = grow_species(load_potential("ethanol-xtb"), [7])  # a trained parent: 20 meV/Å on ethanol
    frames = Subset(GraphDataset(ETHANOL, grown.cutoff, grown.dtype), range(8))
    parent_mae = dataset_errors(grown, frames)["forces_mae"]
    task = FinetuneTask(grown, FitConfig(ema_decay=0.0), (), species_entry_masks(grown, [7]), replay_weight=1.5,
                        max_forgetting=0.1, forgetting_monitor=(frames, parent_mae))
    assert task.control_forgetting() == pytest.approx(0.0) and task.replay_weight == 1.5  # nothing forgotten yet
    start = {k: v.clone() for k, v in grown.state_dict().items()}
    with torch.no_grad():  # forget: every force 1.5 times what the parent predicted
        grown.model[-1].scale.mul_(1.5)
    rise = task.control_forgetting()
    assert rise > 0.1 and task.replay_weight == 3.0
    task.control_forgetting()
    assert task.replay_weight == 6.0
    grown.load_state_dict(start)  # recovered: the weight halves back, never under the one asked for
    for expected in (3.0, 1.5, 1.5):
        task.control_forgetting()
        assert task.replay_weight == expected
    with pytest.raises(ValueError, match="max_forgetting"):
        FinetuneTask(grown, FitConfig(), max_forgetting=0.0)


def _dipole_batch(potential: Potential):
    batch = _nitrogen_batch(potential)
    batch[keys.DIPOLE] = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return batch


@pytest.mark.parametrize("setting", ["weight 1", "weight 3", "other theory"])
def test_finetuning_loss_keeps_the_dipole_under_every_replay_setting(setting):
    """The bug of gdlphys 0.1: fine-tuning's own copy of the loss dropped the dipole (and stage two)."""
    from gdlphys.train.system import PotentialTask

    parent = Potential(tiny_config(dipole=True), [1, 6, 8], [-13.6, -1030.0, -2040.0], 10.0).double()
    grown = grow_species(parent, [7])
    batch = _dipole_batch(grown)
    fit = FitConfig(ema_decay=0.0, dipole_weight=2.0)
    weight = 3.0 if setting == "weight 3" else 1.0
    task = FinetuneTask(grown, fit, (), species_entry_masks(grown, [7]), replay_weight=weight,
                        replay_energies=setting != "other theory")
    replay = torch.tensor([False, True, False])
    got = task.training_step({**batch, keys.REPLAY: replay}, 0)
    pred = PotentialTask(grown, fit)._predict(grown, dict(batch), training=False)
    w = torch.tensor([1.0, weight, 1.0], dtype=torch.float64)
    w_energy = w * torch.tensor([1.0, 0.0 if setting == "other theory" else 1.0, 1.0], dtype=torch.float64)
    n = batch[keys.NUM_ATOMS].double()
    energy = torch.mean(w_energy * ((pred[keys.ENERGY] - batch[keys.ENERGY]) / n) ** 2)
    forces = torch.mean(w[batch[keys.BATCH]].unsqueeze(-1) * (pred[keys.FORCES] - batch[keys.FORCES]) ** 2)
    dipole = torch.mean(w.unsqueeze(-1) * (pred[keys.DIPOLE] - batch[keys.DIPOLE]) ** 2)
    assert float(dipole) > 0
    torch.testing.assert_close(got, energy + forces + 2.0 * dipole)
    task.stage = 2  # stage two raises the energy weight for fine-tuning too
    torch.testing.assert_close(task.training_step({**batch, keys.REPLAY: replay}, 0),
                               fit.stage_two_energy_factor * energy + forces + 2.0 * dipole)


def test_replay_batches_keep_labels_only_some_frames_have(data):
    """Dipoles of the new frames next to replay frames without them: kept, the others weighted 0."""
    from gdlphys.train.replay import ReplayDataModule

    module = ReplayDataModule(
        data["methylamine"], cutoff=4.0, batch_size=9, valid_fraction=0.25, replay=data["ethanol_no_dipole"],
        replay_fraction=0.3,
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    replayed = batch[keys.REPLAY]
    assert keys.DIPOLE in batch and bool(replayed.any()) and not bool(replayed.all())
    torch.testing.assert_close(batch[keys.DIPOLE_LOSS_WEIGHT], (~replayed).to(batch[keys.DIPOLE].dtype))
    assert torch.all(batch[keys.DIPOLE][replayed] == 0)


@pytest.mark.parametrize("replay", [["--replay-weight", "4"], ["--replay-labels", "parent"], ["--replay-labels", "data"]])
def test_finetune_cli_trains_the_dipole_head_under_every_replay_setting(data, tmp_path, replay):
    run = tmp_path / "ft"
    argv = ["finetune", str(data["dipole_parent"]), "--train", str(data["methylamine"]), "--replay",
            str(data["ethanol_no_dipole"] if "data" in replay else data["ethanol"]), *replay,
            "--valid-fraction", "0.25", "--batch-size", "4", "--max-epochs", "1", "--accelerator", "cpu", "--quiet",
            "-o", str(run)]
    assert main(argv) == 0
    header = next(iter(run.glob("logs/*/metrics.csv"))).read_text().splitlines()[0].split(",")
    assert "train/dipole" in header and "val/dipole_mae" in header
