"""Side-by-side benchmarks against MACE (and neighbour lists against ASE, vesin, matscipy).

``gdlphys bench {accuracy,md,memory,train,neighbours,all}`` runs them. Each benchmark measures
gdlphys and its peers in the same run on the same machine, prints a table with the
ratio, and writes ``<name>.json`` and ``<name>.png`` into the output folder.

The peers live in their own virtual environment (``make bench-env``: mace-torch,
vesin, matscipy), and run as subprocesses of the plain scripts in ``benchmarks/peers/``,
which answer in JSON: nothing of gdlphys is imported there, nothing of MACE here.

Why it lives in the package and not beside ``benchmarks/``: ``gdlphys bench`` is a
documented command of the CLI (a public contract in DESIGN.md), and the CLI imports only
from ``gdlphys``: moved out, the command would need a path hack or would be lost, and
``tests/test_bench.py`` tests it as a module like any other. The split follows the
interpreter: what runs in gdlphys's environment is here; what runs in the peers'
(``benchmarks/peers/``, which needs a source checkout, as :mod:`gdlphys.bench.peers`
says) and the one-off measurement scripts stay in ``benchmarks/``. Its floor: just under
``cli``, beside ``predict``; it may use everything below, and nothing but ``cli`` imports it.
"""

from gdlphys.bench.options import BENCHMARKS, BenchOptions
from gdlphys.bench.runner import run_benchmarks

__all__ = ["BENCHMARKS", "BenchOptions", "run_benchmarks"]
