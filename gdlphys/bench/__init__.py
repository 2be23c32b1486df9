"""Side-by-side benchmarks against MACE (and neighbour lists against ASE, vesin, matscipy).

``gdlphys bench {accuracy,md,train,neighbours,all}`` runs them. Each benchmark measures
gdlphys and its peers in the same run on the same machine, prints a table with the
ratio, and writes ``<name>.json`` and ``<name>.png`` into the output folder.

The peers live in their own virtual environment (``make bench-env``: mace-torch,
vesin, matscipy), and run as subprocesses of the plain scripts in ``benchmarks/peers/``,
which answer in JSON: nothing of gdlphys is imported there, nothing of MACE here.
"""

from gdlphys.bench.options import BENCHMARKS, BenchOptions
from gdlphys.bench.runner import run_benchmarks

__all__ = ["BENCHMARKS", "BenchOptions", "run_benchmarks"]
