"""The active-learning loop: explore (committee MD) -> select -> label -> retrain, round after
round, until a full-length exploration finds no frame over the threshold or the label budget is
spent. Every step writes its result into RUN_DIR/round-XX/ atomically before the next begins, so
rerunning the same command after a kill continues from the last finished step.

RUN_DIR/
  state.json               settings, labels used, the current members, the last finished step
  rounds.json, rounds.png  one record per round (frames explored and labelled, spread, errors, wall time)
  round-00/                seed frames (labelled.h5) and the first committee (member-i/)
  round-XX/                explore/ (explored.h5, spread.npz, trajectories.json), selected.json,
                           labelled.h5 (+ .json), train.h5 (all labels so far), member-i/ (fine-tuned)
  committee/, committee.yaml, potential.pt, card.md, calibration.json, calibration.png
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.hdf5_writer import write_hdf5
from gdlphys.io_utils import atomic_write
from gdlphys.learn.calibration import calibrate, plot_calibration
from gdlphys.learn.committee import committee_members, finetune_committee, perturbed_starts, replay_files
from gdlphys.learn.config import LearnConfig
from gdlphys.learn.explore import Exploration, explore
from gdlphys.learn.labelling import finished_labels, label_frames, labelling_software
from gdlphys.learn.report import plot_rounds, spread_distribution, write_card, write_json
from gdlphys.learn.select import distance_descriptor, select_by_spread, select_random
from gdlphys.learn.start import is_labelled, seed_geometries, start_structures

__all__ = ["LearnResult", "learn"]

STATE_VERSION = 1


@dataclass
class LearnResult:
    run_dir: Path
    potential_path: Path  # the best member
    committee: list[Path]
    rounds: list[dict]
    labels_used: int
    finished: str  # "converged", "budget" or "rounds"
    calibration: dict | None


class _Log:
    """Progress lines a person can follow over hours: elapsed time, round, step, numbers."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.begin = enabled, time.monotonic()

    def __call__(self, message: str) -> None:
        if self.enabled:
            seconds = int(time.monotonic() - self.begin)
            print(f"[{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}] gdlphys learn: {message}",
                  file=sys.stderr, flush=True)


class _Run:
    """One RUN_DIR: its state, and each step of each round."""

    def __init__(self, start, potential, run_dir: Path, config: LearnConfig, test: Path | None) -> None:
        self.dir, self.config, self.test, self.log = run_dir, config, test, _Log(config.progress)
        self.state_path = run_dir / "state.json"
        given = {"start": str(start), "potential": [str(p) for p in potential] if isinstance(potential, (list, tuple))
                 else str(potential), "settings": config.fixed_settings()}
        if self.state_path.is_file():
            self.state = json.loads(self.state_path.read_text())
            for key, value in given.items():
                stored = self.state[key]
                if key == "settings":  # a setting added since that run was started: as it is by default
                    stored = {**{k: v for k, v in LearnConfig().fixed_settings().items() if k not in stored}, **stored}
                if stored != value:
                    raise ValueError(f"{run_dir} holds a run with another {key} ({self.state[key]!r}, not {value!r}): "
                                     "rerun with the same settings to resume it, or choose another RUN_DIR")
            self.log(f"resuming {run_dir}: {len(self.state['rounds'])} rounds done, "
                     f"last finished step {self.state['last_step']}")
        else:
            self.state = {"version": STATE_VERSION, **given, "labels_used": 0, "seed_labels": 0, "members": [],
                          "start_potentials": committee_members(potential), "replays": [], "rounds": [],
                          "last_step": None, "finished": None}
        self.structures = start_structures(start)

    def save(self, step: str | None = None, round_index: int | None = None) -> None:
        if step is not None:
            self.state["last_step"] = {"round": round_index, "step": step}
        write_json(self.state_path, self.state)

    def round_dir(self, index: int) -> Path:
        return self.dir / f"round-{index:02d}"

    # round 0: seed frames and the first committee
    def seed(self) -> None:
        config, r0 = self.config, self.round_dir(0)
        if self.state["members"]:
            return
        seeds = r0 / "labelled.h5"
        if finished_labels(seeds) is None:
            if is_labelled(self.structures):
                self.log(f"seed frames: the {len(self.structures)} labelled frames of START")
                r0.mkdir(parents=True, exist_ok=True)
                write_hdf5(seeds, self.structures)
                write_json(seeds.with_suffix(".json"), {"path": str(seeds), "labelled": len(self.structures), "failed": []})
            else:
                if config.budget_labels <= config.seed_frames:
                    raise ValueError(f"budget_labels ({config.budget_labels}) leaves nothing after the {config.seed_frames} seed frames")
                self.log(f"seed frames: {config.seed_frames} geometries from GFN2-xTB MD at {config.temperatures[0]:g} K")
                geometries = seed_geometries(self.structures, config.seed_frames, config.temperatures[0], config.interval,
                                             config.timestep_fs, config.friction, config.seed)
                outcome = self._label(geometries, seeds, "seed")
                self.state["seed_labels"] = len(geometries)
                self.state["labels_used"] = len(geometries)
                if outcome.labelled < 2:
                    raise ValueError(f"only {outcome.labelled} seed frames could be labelled: {outcome.failed[:3]}")
            self.save("label", 0)
        parents = self.state["start_potentials"]
        replays = replay_files(parents * config.committee_size if len(parents) == 1 else parents)
        if len(parents) == 1:
            parents = perturbed_starts(parents[0], config.committee_size, config.committee_noise, config.seed, r0)
        self.log(f"round 0: fine-tuning {len(parents)} members on the seed frames (replay: "
                 f"{', '.join(sorted({str(r) for r in replays}))})")
        summaries = self._retrain(parents, replays, seeds, r0, 0)
        self.state["replays"] = replays
        self.state["members"] = [s["potential"] for s in summaries]
        self.save("retrain", 0)

    def _label(self, frames, output: Path, what: str):
        self.log(f"{what}: labelling {len(frames)} frames with {self.config.method}")
        outcome = label_frames(frames, output, self.config.label, self.config.method, self.config.workers,
                               on_frame=lambda done, total: self.log(f"{what}: labelled {done}/{total}")
                               if done == total or done % max(1, total // 5) == 0 else None)
        if outcome.failed:
            self.log(f"{what}: {len(outcome.failed)} frames could not be labelled (first: {outcome.failed[0][:200]})")
        return outcome

    def _retrain(self, parents, replays, train: Path, round_dir: Path, index: int) -> list[dict]:
        config = self.config
        seeds = [config.seed * 1000 + 10 * index + i for i in range(len(parents))]

        def done(i: int, summary: dict) -> None:
            errors = summary["errors"]["new"]["finetuned"]
            self.log(f"round {index}: member {i} fine-tuned ({summary['epochs']} epochs): validation force MAE "
                     f"{1000 * errors['forces_mae']:.1f} meV/Å")

        return finetune_committee(parents, train, round_dir, replays, seeds, config.accelerator, config.retrain_epochs,
                                  config.retrain_time, config.progress, on_member=done)

    # rounds 1, 2, ...
    def explore(self, index: int) -> tuple[Exploration, float]:
        config, where = self.config, self.round_dir(index) / "explore"
        begin = time.perf_counter()
        found = Exploration.load(where)
        if found is not None:
            return found, 0.0
        total = config.trajectories * len(config.temperatures)
        self.log(f"round {index}: exploring, {total} trajectories of {config.steps} steps "
                 f"({config.steps * config.timestep_fs / 1000:g} ps) at {', '.join(f'{t:g} K' for t in config.temperatures)}")

        def finished(t, total: int) -> None:
            end = "full length" if t.stopped is None else f"stopped at {t.time_fs:g} fs: {t.stopped}"
            if t.rollbacks:
                end += f", {t.rollbacks} rollback{'s' if t.rollbacks > 1 else ''} at the hard limit"
            on = "" if t.driver is None else f", on member {t.driver}"
            self.log(f"round {index}: trajectory {t.index + 1}/{total} ({t.temperature:g} K{on}): {t.frames} frames, "
                     f"max spread {t.max_spread:.3f} eV/Å, {end}")

        exploration = explore(self.state["members"], self.structures, config.temperatures, config.trajectories, config.steps,
                              config.timestep_fs, config.interval, config.friction, config.hard_force_std,
                              config.seed * 1009 + index, config.workers, config.rollbacks, on_trajectory=finished,
                              drive=config.drive, first_driver=(index - 1) * total)
        exploration.save(where)
        self.save("explore", index)
        return exploration, time.perf_counter() - begin

    def select(self, index: int, exploration: Exploration) -> list[int]:
        config, where = self.config, self.round_dir(index) / "selected.json"
        if where.is_file():
            return json.loads(where.read_text())["indices"]
        limit = min(config.per_round, config.budget_labels - self.state["labels_used"])
        if config.select == "random":
            chosen = select_random(len(exploration.frames), limit, np.random.default_rng([config.seed, index]))
        else:
            spread = exploration.spread
            chosen = select_by_spread(spread, exploration.column("trajectory") if exploration.frames else np.zeros(0),
                                      exploration.column("time_fs") if exploration.frames else np.zeros(0),
                                      [distance_descriptor(f.positions) for f in exploration.frames],
                                      config.max_force_std, limit, config.min_separation_fs, config.min_distance)
            if not chosen and not exploration.full_length:  # the excursions passed the hard limit in one jump:
                chosen = exploration.before_limit()[:limit]  # the last safe frames before it
        write_json(where, {"indices": chosen, "selection": config.select})
        self.save("select", index)
        return chosen

    def run_round(self, index: int) -> dict:
        config, rdir = self.config, self.round_dir(index)
        wall: dict[str, float] = {}  # seconds this process spent on each step (a resumed step: what was left)
        exploration, wall["explore"] = self.explore(index)
        begin = time.perf_counter()
        chosen = self.select(index, exploration)
        distribution = spread_distribution(exploration.spread, config.max_force_std)
        converged = (config.select == "spread" and exploration.full_length and distribution["over_threshold"] == 0)
        self.log(f"round {index}: {distribution['frames']} frames explored, {distribution['over_threshold']} over "
                 f"{config.max_force_std} eV/Å, {len(chosen)} selected" + (" -> converged" if converged else ""))
        record = {"round": index, "selection": config.select, "trajectories": len(exploration.trajectories),
                  "stopped_trajectories": sum(t.stopped is not None for t in exploration.trajectories),
                  "rollbacks": sum(t.rollbacks for t in exploration.trajectories),
                  "explored_fs": sum(t.time_fs for t in exploration.trajectories), "spread": distribution,
                  "selected": len(chosen), "labelled": 0, "label_failures": 0, "converged": converged, "errors": {}}
        if converged or not chosen:
            wall["select"] = time.perf_counter() - begin
            return {**record, "labels_used": self.state["labels_used"], "wall_s": wall}
        labelled_file = rdir / "labelled.h5"
        outcome = finished_labels(labelled_file)
        if outcome is None:
            outcome = self._label([exploration.frames[k] for k in chosen], labelled_file, f"round {index}")
            self.state["labels_used"] += len(chosen)
            self.save("label", index)
        wall["label"] = time.perf_counter() - begin
        record.update(labelled=outcome.labelled, label_failures=len(outcome.failed))
        members = self.state["members"]
        if outcome.path is not None:
            before, _, _ = calibrate(members, read_hdf5(outcome.path))
            record["errors"]["new_frames_before"] = before.to_dict()
            self.log(f"round {index}: committee force MAE on the new frames before retraining "
                     f"{1000 * before.forces_mae:.1f} meV/Å (Spearman rho of spread and error: {_number(before.spearman_rho)})")
            begin = time.perf_counter()
            train = rdir / "train.h5"
            if not train.is_file():
                files = [self.round_dir(r) / "labelled.h5" for r in range(index + 1)]
                write_hdf5(train, [f for path in files if path.is_file() for f in read_hdf5(path)], method=config.method,
                           software=labelling_software(config.label))
            summaries = self._retrain(members, self.state["replays"], train, rdir, index)
            self.state["members"] = [s["potential"] for s in summaries]
            record["errors"].update(_member_errors(summaries))
            wall["retrain"] = time.perf_counter() - begin
        if self.test is not None:
            test, _, _ = calibrate(self.state["members"], read_hdf5(self.test))
            record["errors"]["test"] = test.to_dict()
            self.log(f"round {index}: committee force MAE on the test frames {1000 * test.forces_mae:.1f} meV/Å")
        return {**record, "labels_used": self.state["labels_used"], "wall_s": wall}

    def finish(self, finished: str) -> LearnResult:
        config, members = self.config, self.state["members"]
        committee_dir = self.dir / "committee"
        committee_dir.mkdir(exist_ok=True)
        committee = []
        for i, member in enumerate(members):
            committee.append(_copy(Path(member), committee_dir / f"member-{i}.pt"))
        preset = "\n".join(["schema_version: 1", f"description: committee of gdlphys learn ({self.dir.name})",
                            "committee:", "  potentials:", *[f"    - committee/member-{i}.pt" for i in range(len(members))],
                            f"  max_force_std: {config.max_force_std}", "  on_exceed: warn", "dtype: float64", "device: auto", ""])
        with atomic_write(self.dir / "committee.yaml") as tmp:
            Path(tmp).write_text(preset)
        best = _best_member(self.state["rounds"], members)
        potential_path = _copy(Path(members[best]), self.dir / "potential.pt")
        calibration = self.calibrate()
        summary = {**self.state, "config": config.to_dict(), "method": config.method,
                   "software": labelling_software(config.label), "finished": finished, "best_member": best,
                   "committee": [str(p) for p in committee], "calibration": calibration}
        write_card(self.dir / "card.md", summary)
        self.state["finished"] = finished
        self.save()
        self.log(f"finished ({finished}) after {len(self.state['rounds'])} rounds, {self.state['labels_used']} labels; "
                 f"potential: {potential_path}; card: {self.dir / 'card.md'}")
        return LearnResult(self.dir, potential_path, committee, self.state["rounds"], self.state["labels_used"],
                           finished, calibration)

    def calibrate(self) -> dict | None:
        """The final committee's spread against its true error on frames of the last exploration
        that were not selected (labelled here, never trained on)."""
        config, rounds = self.config, self.state["rounds"]
        if config.calibration_frames == 0 or not rounds:
            return None
        last = rounds[-1]["round"]
        exploration = Exploration.load(self.round_dir(last) / "explore")
        selected = json.loads((self.round_dir(last) / "selected.json").read_text())["indices"]
        if exploration is None or len(exploration.frames) <= len(selected):
            return None
        chosen = select_random(len(exploration.frames), config.calibration_frames,
                               np.random.default_rng([config.seed, last, 7]), exclude=selected)
        where = self.dir / "calibration"
        outcome = finished_labels(where / "labelled.h5")
        if outcome is None:
            where.mkdir(exist_ok=True)
            outcome = self._label([exploration.frames[k] for k in chosen], where / "labelled.h5", "calibration")
        if outcome.path is None:
            return None
        result, spread, error = calibrate(self.state["members"], read_hdf5(outcome.path))
        values = {**result.to_dict(), "round": last, "labels": len(chosen)}
        write_json(self.dir / "calibration.json", values)
        plot_calibration(spread, error, result, self.dir / "calibration.png")
        self.log(f"calibration on {result.frames} frames: Spearman rho {_number(result.spearman_rho)}, "
                 f"error ~ {_number(result.factor)} x spread")
        return values


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _copy(source: Path, target: Path) -> Path:
    with atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def _member_errors(summaries: list[dict]) -> dict:
    """Validation (new data) and original-domain force errors after retraining: the members' mean, each member's."""
    after = [s["errors"]["new"]["finetuned"]["forces_mae"] for s in summaries]
    original = [s["errors"].get("original", {}).get("finetuned", {}).get("forces_mae") for s in summaries]
    errors = {"validation_after": {"forces_mae": float(np.mean(after)), "members": after}}
    if all(o is not None for o in original):
        errors["original_after"] = {"forces_mae": float(np.mean(original)), "members": original}
    return errors


def _best_member(rounds: list[dict], members: list[str]) -> int:
    """The member with the lowest validation force error after its last retraining (0 without a record)."""
    for record in reversed(rounds):
        after = record.get("errors", {}).get("validation_after")
        if after:
            return int(np.argmin(after["members"]))
    return 0


def learn(
    start: str | Path,
    potential: str | Path | list[str | Path],
    run_dir: str | Path,
    *,
    config: LearnConfig | None = None,
    test: str | Path | None = None,
    **options,
) -> LearnResult:
    """Active learning from ``start`` (SMILES, structure file, or HDF5 of seed frames) and
    ``potential`` (one potential, a committee preset, or a list of potentials) into ``run_dir``.

    ``options`` are :class:`LearnConfig` fields (``label="xtb"``, ``temperatures=[300]``,
    ``rounds``, ``budget_labels``, ``per_round``, ``max_force_std``, ``hard_force_std``, ...),
    applied over ``config``. ``test``: independent labelled frames the committee is measured on
    after every round. Rerunning with the same arguments resumes from the last finished step;
    ``rounds`` and ``budget_labels`` may grow between runs.
    """
    config = replace(config, **options) if config is not None else LearnConfig(**options)
    run_dir = Path(run_dir).resolve()
    test_path = Path(test) if test is not None else None
    if test_path is not None and not test_path.is_file():
        raise FileNotFoundError(f"test frames {test_path} not found")
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(start, potential, run_dir, config, test_path)
    run.seed()
    finished = "rounds"
    for index in range(1, config.rounds + 1):
        if run.state["labels_used"] >= config.budget_labels:
            finished = "budget"
            break
        if index <= len(run.state["rounds"]):
            record = run.state["rounds"][index - 1]
        else:
            record = run.run_round(index)
            run.state["rounds"].append(record)
            run.save("retrain", index)
            write_json(run_dir / "rounds.json", run.state["rounds"])
            plot_rounds(run.state["rounds"], config.max_force_std, run_dir / "rounds.png")
        if record["converged"]:
            finished = "converged"
            break
    else:
        if run.state["labels_used"] >= config.budget_labels:
            finished = "budget"
    return run.finish(finished)
