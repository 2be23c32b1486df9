"""Peak memory of one energy-and-forces call against the number of atoms, gdlphys beside MACE.

Periodic boxes of aspirin copies (the md benchmark's structures, larger), one
``get_forces`` call per code and size, each in a fresh process so that its peak resident
memory belongs to that size alone. The peak is restarted after the imports and the model
are loaded (Linux ``clear_refs``), so it is the call's: the table gives it, and its rise
above the memory before the call, per atom.
Models: the md benchmark's (trained by the accuracy benchmark in the same output folder,
else freshly initialised ones: memory does not depend on the weights). gdlphys runs at its
defaults (``edge_chunk=None``: edges and atoms in chunks above 200,000 edges); MACE at its
own, up to the size where it would not fit (``PEER_MAX_ATOMS``).

    python -m gdlphys.bench.memory --child box.xyz potential.pt result.json   # one measurement
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from gdlphys.bench.options import BenchOptions
from gdlphys.bench.peers import run_peer, thread_environment
from gdlphys.bench.report import Table, line_panels, write_report
from gdlphys.bench.rss import peak_rss_gb, reset_peak
from gdlphys.bench.systems import aspirin_molecule, molecule_box

FULL = {"grids": [(4, 4, 6), (8, 8, 8), (12, 12, 12), (18, 18, 15)], "peer_max_atoms": 11_000}  # 2,016 ... 102,060 atoms
QUICK = {"grids": [(2, 2, 2), (4, 4, 6)], "peer_max_atoms": 11_000}


def _log(message: str) -> None:
    print(f"bench memory: {message}", file=sys.stderr, flush=True)


def measure(structure: Path, potential: Path, device: str) -> dict:
    """One energy-and-forces call through GDLCalculator at its defaults, in this process."""
    import ase.io

    from gdlphys.calculator import GDLCalculator

    atoms = ase.io.read(structure)
    calc = GDLCalculator(str(potential), device=device, dtype="float32")
    loaded = reset_peak()
    started = time.perf_counter()
    calc.get_forces(atoms)
    seconds = time.perf_counter() - started
    edges = int(calc.graph(atoms)["edge_index"].shape[1])
    return {"n_atoms": len(atoms), "edges": edges, "seconds": seconds, "loaded_rss_gb": loaded, "peak_rss_gb": peak_rss_gb()}


def _ours(structure: Path, potential: Path, options: BenchOptions, log: Path) -> dict:
    result = log.with_suffix(".json")
    command = [sys.executable, "-m", "gdlphys.bench.memory", "--child", str(structure), str(potential), str(result), "--device", options.device]
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=thread_environment(options.threads), check=False)
    if done.returncode != 0:  # out of memory, most likely: a row that says so
        return {"error": f"exit status {done.returncode} (see {log})"}
    return json.loads(result.read_text())


def run(options: BenchOptions, peer_python: Path) -> list[Table]:
    import ase.io

    from gdlphys.bench.md import bench_models
    from gdlphys.models.files import save_potential

    work = options.work_dir("memory")
    setting = QUICK if options.quick else FULL
    potential, mace_model, origin = bench_models(options, options.work_dir("md"), peer_python)
    potential_path = save_potential(potential, work / "potential.pt")
    ours, peer, sizes = [], [], []
    for grid in setting["grids"]:
        atoms = molecule_box(aspirin_molecule(), grid)
        sizes.append(len(atoms))
        path = work / f"aspirin-{len(atoms)}.xyz"
        ase.io.write(path, atoms, format="extxyz")
        ours.append(_ours(path, potential_path, options, work / f"gdlphys-{len(atoms)}.log"))
        _log(f"gdlphys: {len(atoms)} atoms, {ours[-1]}")
        if len(atoms) <= setting["peer_max_atoms"]:
            peer.append(run_peer(peer_python, "mace_memory.py", ["--model", mace_model, "--structure", str(path), "--device", options.device],
                                 work / f"mace-{len(atoms)}.json", work / f"mace-{len(atoms)}.log", options.threads, f"MACE memory, {len(atoms)} atoms"))
        else:
            peer.append({"skipped": f"above {setting['peer_max_atoms']} atoms"})
        _log(f"MACE: {len(atoms)} atoms, {peer[-1]}")
    tables = [memory_table(sizes, ours, peer, origin, options)]
    series = {code: [(n, r.get("peak_rss_gb")) for n, r in zip(sizes, rows)] for code, rows in (("gdlphys", ours), ("MACE", peer))}
    line_panels(options.out / "memory.png", f"one energy-and-forces call, {options.threads} thread(s), {options.device}",
                [("peak resident memory", "atoms", "GB", series)])
    write_report(options.out, "memory", tables, {"gdlphys": ours, "MACE": peer, "sizes": sizes, "models": origin}, options.to_dict())
    return tables


def memory_table(sizes: list[int], ours: list[dict], peer: list[dict], origin: str, options: BenchOptions) -> Table:
    table = Table(f"Memory of one energy-and-forces call: aspirin boxes, float32, {options.threads} thread(s), {options.device}", ["gdlphys", "MACE"])
    for n, a, b in zip(sizes, ours, peer):
        table.add(f"{n} atoms: peak RSS", "GB", {"gdlphys": a.get("peak_rss_gb"), "MACE": b.get("peak_rss_gb")})
        call = {code: (r["peak_rss_gb"] - r["loaded_rss_gb"]) * 2**20 / n if "peak_rss_gb" in r else None for code, r in (("gdlphys", a), ("MACE", b))}
        table.add(f"{n} atoms: the call's own, per atom", "kB", call)
        table.add(f"{n} atoms: time of the call", "s", {"gdlphys": a.get("seconds"), "MACE": b.get("seconds")})
    for n, a, b in zip(sizes, ours, peer):
        for code, r in (("gdlphys", a), ("MACE", b)):
            if "error" in r or "skipped" in r:
                table.notes.append(f"{code} at {n} atoms: {r.get('error') or 'not run, ' + r['skipped']}")
    edges = [f"{n}: {a['edges']}" for n, a in zip(sizes, ours) if "edges" in a]
    table.notes += [
        f"edges (gdlphys's cutoff): {', '.join(edges)}",
        "each call in a fresh process; the peak is the call's (restarted after imports and the model), 'own' less the memory before it",
        "gdlphys at its defaults: edges and atoms in chunks, recomputed in the backward pass, above 200,000 edges",
        f"models: {origin}",
    ]
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("STRUCTURE", "POTENTIAL", "RESULT"), required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    structure, potential, result = map(Path, args.child)
    result.write_text(json.dumps(measure(structure, potential, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
