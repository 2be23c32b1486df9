"""CPU threads: the policy (size, usable cores, other processes' load) and set-and-restore around a call."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from gdlphys.threads import (
    CALL_SMALL_WORK_ATOMS,
    SMALL_WORK_ATOMS,
    IdleCores,
    ThreadPolicy,
    _Reading,
    threads_for,
    usable_cores,
    using_threads,
)


@pytest.fixture
def caller_threads():
    """The test's own torch setting (3: nothing the policy picks on its own here), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_using_threads_sets_them_for_the_body_and_restores_them_even_on_error(caller_threads):
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(KeyError), using_threads(2):
        assert torch.get_num_threads() == 2
        raise KeyError("inside")
    assert torch.get_num_threads() == caller_threads


def test_one_thread_for_a_molecule_every_available_core_for_big_work():
    assert threads_for(21, available=8) == 1
    assert threads_for(SMALL_WORK_ATOMS - 1, available=8) == 1
    assert threads_for(SMALL_WORK_ATOMS, available=8) == 8
    assert threads_for(1344, available=1) == 1
    assert threads_for(10_000) == usable_cores()


def test_a_policy_asked_every_call_takes_idle_cores_from_fewer_atoms_than_a_run(monkeypatch):
    """168 atoms on two idle cores: the calculator takes both (1.6x measured), a training run one."""
    from gdlphys.calculator import GDLCalculator
    from structures import tiny_potential

    monkeypatch.setattr("gdlphys.threads.usable_cores", lambda: 2)
    per_call, per_run = GDLCalculator(tiny_potential())._thread_policy, ThreadPolicy()
    for policy in (per_call, per_run):
        policy.idle_cores = lambda usable: usable
    assert CALL_SMALL_WORK_ATOMS < 168 < SMALL_WORK_ATOMS
    with using_threads(2):
        assert per_call(168) == 2 and per_run(168) == 1
        assert per_call(21) == 1
        per_call.idle_cores = lambda usable: usable - 1  # a core busy elsewhere
        assert per_call(168) == 1


def test_usable_cores_are_the_affinity_capped_by_omp_num_threads(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert usable_cores() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 5))
    assert usable_cores() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert usable_cores() == cores


def test_the_policy_keeps_a_lower_setting_of_the_caller_and_reads_the_load_only_for_big_work(monkeypatch):
    policy = ThreadPolicy()
    policy.idle_cores = lambda usable: pytest.fail("read the load for a molecule")
    assert policy(21) == 1
    policy.idle_cores = lambda usable: usable
    with using_threads(1):
        assert policy(10_000) == 1
    monkeypatch.setattr("gdlphys.threads.usable_cores", lambda: 8)
    policy.idle_cores = lambda usable: usable - 3  # three of the eight cores busy elsewhere
    with using_threads(4):
        assert policy(10_000) == 4  # the script's four fit in the five idle ones
    policy.idle_cores = lambda usable: usable - 6
    with using_threads(4):
        assert policy(10_000) == 2


def test_idle_cores_count_other_processes_but_not_this_one(monkeypatch):
    watch = IdleCores()
    # wall s, CPU-seconds busy on the cores (everyone), CPU-seconds of this process; fake wall: each call reads anew
    readings = iter([_Reading(0.0, 100.0, 5.0), _Reading(1.0, 101.5, 6.0), _Reading(2.0, 102.5, 7.0), _Reading(3.0, 103.7, 7.5)])
    monkeypatch.setattr(watch, "_read", lambda: next(readings))
    monkeypatch.setattr("gdlphys.threads.time.sleep", lambda s: None)
    assert watch.others() == pytest.approx(0.5)  # 1.5 core-seconds busy in 1 s, 1.0 of them ours
    assert watch(2) == 2  # the next second: all of it ours
    assert watch(4) == 3  # then 0.7 of a core someone else's: that core is taken


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat (Linux)")
def test_idle_cores_see_a_process_spinning_on_a_core():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"])
    try:
        time.sleep(0.3)
        watch, cores = IdleCores(), len(os.sched_getaffinity(0))
        assert watch.others() > 0.6
        assert watch(cores) <= max(1, cores - 1)  # not the spinner's core (nor any other that is busy)
    finally:
        spinner.kill()
        spinner.wait()


def test_the_command_line_sets_the_same_policy_for_its_whole_run(caller_threads):
    from gdlphys.cli.threads import set_threads

    set_threads(None, 21)  # gdlphys md on a molecule
    assert torch.get_num_threads() == 1
    set_threads(2, 21)  # --threads 2
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads, expected", [(None, 1), (2, 2)])
def test_training_from_python_chooses_its_threads_and_restores_the_callers(caller_threads, tmp_path, monkeypatch, threads, expected):
    """train_potential on ethanol (9 atoms x a few frames a step: small work) trains with one thread
    whatever the caller's torch setting, or with the threads it is given, and leaves the caller's."""
    from pathlib import Path

    from gdlphys.data import read_hdf5, write_hdf5
    from gdlphys.train.run import train_potential
    from gdlphys.train.system import PotentialTask

    source = Path(__file__).resolve().parent.parent / "datasets" / "ethanol-xtb" / "train.h5"
    write_hdf5(tmp_path / "small.h5", read_hdf5(source, index=slice(0, 24)), method="GFN2-xTB")
    seen: list[int] = []
    step = PotentialTask.training_step

    def counting_step(self, batch, batch_idx):
        seen.append(torch.get_num_threads())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(PotentialTask, "training_step", counting_step)
    train_potential(tmp_path / "small.h5", tmp_path / "run", max_epochs=1, progress=False, threads=threads,
                    trainer={"limit_train_batches": 2, "limit_val_batches": 1, "accelerator": "cpu"})
    assert seen and set(seen) == {expected}
    assert torch.get_num_threads() == caller_threads


def test_predict_takes_a_worker_per_idle_core_whatever_omp_num_threads(monkeypatch):
    """OMP_NUM_THREADS limits each process's threads; predict's workers have one thread each, so
    their number comes from the affinity and the other processes' load only."""
    from gdlphys.predict import default_processes

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("gdlphys.threads.affinity_cores", lambda: 4)
    monkeypatch.setattr(IdleCores, "__call__", lambda self, usable: usable)
    assert usable_cores() == 1 and default_processes(10, "cpu", 1, None) == 4
    assert default_processes(3, "cpu", 1, None) == 3 and default_processes(10, "cpu", 1, 2) == 1
    monkeypatch.setattr(IdleCores, "__call__", lambda self, usable: usable - 1)  # a core busy elsewhere
    assert default_processes(10, "cpu", 1, None) == 3
