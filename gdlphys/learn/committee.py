"""The committee of an active-learning run: where its members come from, and how each round
fine-tunes every one of them (:func:`gdlphys.train.finetune.finetune_potential`, with its new
elements, reference-energy refit and replay of the original training data)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from gdlphys.models.files import POTENTIAL_FILENAME, load_potential, save_potential
from gdlphys.presets import names_a_preset, read_preset
from gdlphys.train.finetune import FinetuneConfig, default_finetune_fit, finetune_potential
from gdlphys.train.replay import find_training_data

__all__ = ["committee_members", "finetune_committee", "perturbed_starts", "replay_files"]


def committee_members(potential: str | Path | Sequence[str | Path]) -> list[str]:
    """The potential files (or names) of a committee: a list of potentials, a committee preset
    (ase_calculators/ name or YAML file), or one potential (a committee of one, to be grown)."""
    if isinstance(potential, (list, tuple)):
        members = [str(p) for p in potential]
    elif names_a_preset(potential):
        members = list(read_preset(potential).potentials)
    else:
        members = [str(potential)]
    for member in members:
        load_potential(member)  # a wrong name fails here, before anything runs
    return members


def perturbed_starts(parent: str | Path, size: int, scale: float, seed: int, folder: Path) -> list[str]:
    """``size`` starting points for a committee grown from one potential: the parent itself, then
    copies whose weights are each multiplied by ``1 + scale * N(0, 1)`` (seeded per member).
    Fine-tuning one parent with different seeds alone leaves members that agree to a fraction of
    a meV/Å: a spread that says nothing; the perturbation gives each member its own minimum."""
    potential = load_potential(parent)
    starts = [str(parent)]
    for i in range(1, size):
        path = folder / f"start-member-{i}.pt"
        if not path.is_file():
            member = copy.deepcopy(potential)
            generator = torch.Generator().manual_seed(seed * 1000 + i)
            with torch.no_grad():
                for weight in member.parameters():
                    noise = torch.randn(weight.shape, generator=generator, dtype=torch.float64).to(weight.dtype)
                    weight.mul_(1 + scale * noise)
            save_potential(member, path)
        starts.append(str(path))
    return starts


def replay_files(members: Sequence[str | Path]) -> list[str | None]:
    """Each starting member's own training data (found by the hash its file records), rehearsed
    in every round against forgetting; None where it cannot be found (then nothing is replayed)."""
    found = [find_training_data(load_potential(member)) for member in members]
    return [str(path) if path is not None else None for path in found]


def finetune_committee(
    parents: Sequence[str | Path],
    train: Path,
    round_dir: Path,
    replays: Sequence[str | None],
    seeds: Sequence[int],
    accelerator: str,
    max_epochs: int | None,
    max_time: str | None,
    progress: bool,
    on_member: Callable[[int, dict], None] = lambda index, summary: None,
) -> list[dict]:
    """Fine-tune ``parents[i]`` on ``train`` with seed ``seeds[i]`` into ``round_dir/member-i``;
    a member already fine-tuned there is kept (resume). Returns each member's finetune.json."""
    summaries = []
    for i, (parent, replay, seed) in enumerate(zip(parents, replays, seeds)):
        out = round_dir / f"member-{i}"
        record = out / "finetune.json"
        if not (record.is_file() and (out / POTENTIAL_FILENAME).is_file()):
            potential = load_potential(parent)
            fit = replace(default_finetune_fit(potential), seed=seed)
            config = FinetuneConfig(replay_fraction=FinetuneConfig.replay_fraction if replay else 0.0)
            finetune_potential(potential, train, out, replay=replay, config=config, fit=fit,
                               trainer={"accelerator": accelerator},
                               max_epochs=max_epochs, max_time=max_time, progress=progress)
        summary = json.loads(record.read_text())
        summary["potential"] = str(out / POTENTIAL_FILENAME)
        summaries.append(summary)
        on_member(i, summary)
    return summaries
