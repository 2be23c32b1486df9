"""Labelling the selected frames with the chosen level of theory, in parallel and resumable.

Each frame's label goes to ``OUTPUT.partial/<k>.h5`` (atomically) the moment it is done, a
frame the method cannot label (an SCF that does not converge) to ``<k>.failed`` with the reason;
a rerun labels only the frames that have neither. The partials are merged into ``OUTPUT``
atomically and then removed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from ase import Atoms

from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.hdf5_writer import write_hdf5
from gdlphys.data.label import label_atoms, one_thread_worker, tblite_version
from gdlphys.data.sampling import labelled_copy
from gdlphys.io_utils import atomic_write

__all__ = ["LabelOutcome", "finished_labels", "label_frames", "labelling_software"]


@dataclass
class LabelOutcome:
    path: Path | None  # the labelled frames (None: not one could be labelled)
    labelled: int
    failed: list[str]  # one reason per frame that could not be labelled


def labelling_software(label: str) -> str:
    if label == "xtb":
        return f"tblite {tblite_version()}"
    from gdlphys.data.dft import pyscf_version

    return f"pyscf {pyscf_version()}"


def _label_one(job: tuple[Atoms, str, Path]) -> str | None:
    """Label one frame into its partial file (in a worker); the reason where it failed."""
    atoms, label, partial = job
    try:
        if label == "xtb":
            frame = label_atoms(atoms, "GFN2-xTB")
        else:
            from gdlphys.data.dft import PySCFCalculator

            frame = labelled_copy(atoms, PySCFCalculator())
    except (ValueError, RuntimeError) as err:  # SCF failure, non-finite label
        with atomic_write(partial.with_suffix(".failed")) as tmp:
            Path(tmp).write_text(str(err))
        return str(err)
    write_hdf5(partial, [frame])
    return None


def label_frames(
    frames: Sequence[Atoms], output: Path, label: str, method: str, workers: int = 1,
    on_frame: Callable[[int, int], None] = lambda done, total: None,
) -> LabelOutcome:
    """Label ``frames`` ("xtb" or "dft") into ``output``; resumes a run that was cut short."""
    software = labelling_software(label)  # fails early (no PySCF) before any work
    partial_dir = output.with_name(output.name + ".partial")
    partial_dir.mkdir(parents=True, exist_ok=True)
    partials = [partial_dir / f"{k:05d}.h5" for k in range(len(frames))]
    todo = [(frames[k], label, p) for k, p in enumerate(partials) if not p.exists() and not p.with_suffix(".failed").exists()]
    done = len(frames) - len(todo)
    if workers == 1 or len(todo) < 2:
        for job in todo:
            _label_one(job)
            done += 1
            on_frame(done, len(frames))
    else:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("fork"), initializer=one_thread_worker) as pool:
            for _ in pool.map(_label_one, todo):
                done += 1
                on_frame(done, len(frames))
    labelled = [frame for p in partials if p.exists() for frame in read_hdf5(p)]
    failed = [p.with_suffix(".failed").read_text() for p in partials if p.with_suffix(".failed").exists()]
    if labelled:
        write_hdf5(output, labelled, method=method, software=software)
    outcome = LabelOutcome(output if labelled else None, len(labelled), failed)
    with atomic_write(output.with_suffix(".json")) as tmp:  # written last: the step is done
        Path(tmp).write_text(json.dumps({"path": str(outcome.path) if outcome.path else None,
                                         "labelled": outcome.labelled, "failed": failed}, indent=2))
    shutil.rmtree(partial_dir, ignore_errors=True)
    return outcome


def finished_labels(output: Path) -> LabelOutcome | None:
    """The outcome of a finished :func:`label_frames` into ``output``, or None."""
    record = output.with_suffix(".json")
    if not record.is_file():
        return None
    values = json.loads(record.read_text())
    return LabelOutcome(Path(values["path"]) if values["path"] else None, values["labelled"], values["failed"])
