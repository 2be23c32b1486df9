"""Where the shipped instances (potentials/, datasets/, ase_calculators/) live.

They are files, not importable code. In a source checkout or editable install they
sit at the repository root; a built wheel installs them under <prefix>/share/gdlphys.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shipped_dirs(kind: str) -> list[Path]:
    """Candidate folders holding shipped instances of ``kind`` ('potentials', 'datasets', 'ase_calculators')."""
    candidates = [_REPO_ROOT / kind, Path(sys.prefix) / "share" / "gdlphys" / kind]
    return [c for c in candidates if c.is_dir()]


def shipped_names(kind: str) -> list[str]:
    names = {p.name for d in shipped_dirs(kind) for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(names)


def find_shipped(kind: str, name: str) -> Path | None:
    for d in shipped_dirs(kind):
        if (d / name).is_dir():
            return d / name
    return None
