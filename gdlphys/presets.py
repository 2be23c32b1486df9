"""Ready-to-attach calculator presets: small declarative files in ase_calculators/.

A preset fixes the choices a user makes every time a potential meets an MD run:
which potential (or committee of potentials), float32 or float64, which device,
the neighbour-list skin, and optional add-ons (D3 dispersion, a committee's
uncertainty threshold). ``load_calculator("organic-md")`` turns one into a
ready ASE calculator. The schema is documented in ase_calculators/README.md.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gdlphys.paths import shipped_dirs

SCHEMA_VERSION = 1
_DTYPES = ("float32", "float64")
_DAMPINGS = ("d3bj", "d3zero", "d3bjm", "d3zerom", "d3op")
_ON_EXCEED = ("warn", "stop")


class PresetError(ValueError):
    """A preset file that is malformed; the message names the file and the field."""

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        self.source, self.field, self.problem = source, field_name, problem
        super().__init__(f"{source}: field '{field_name}': {problem}")


@dataclass(frozen=True)
class DispersionSpec:
    """DFT-D3 through the ``dftd3`` package, with the damping parameters of ``functional``."""

    functional: str
    damping: str = "d3bj"


@dataclass(frozen=True)
class CommitteeSpec:
    """Uncertainty policy of a committee: the force spread (eV/Å) above which MD warns or stops."""

    max_force_std: float | None = None
    on_exceed: str = "warn"


@dataclass(frozen=True)
class Preset:
    name: str
    potentials: tuple[str, ...]  # one potential, or the members of a committee
    description: str = ""
    dtype: str = "float64"
    device: str = "auto"
    skin: float = 0.0
    dispersion: DispersionSpec | None = None
    committee: CommitteeSpec | None = None
    source: str = field(default="<dict>", compare=False)


def _unknown(source: str, where: str, values: dict, known: set[str]) -> None:
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(str(key), sorted(known), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f"; known fields: {', '.join(sorted(known))}"
            raise PresetError(source, f"{where}{key}", f"unknown field{suggestion}")


def _string(source: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PresetError(source, name, f"must be a non-empty string, got {value!r}")
    return value


def _choice(source: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise PresetError(source, name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _resolve_member(source_dir: Path | None, text: str) -> str:
    """Relative paths in a preset file are relative to that file; names stay names."""
    if source_dir is not None and ("/" in text or text.endswith(".pt")):
        candidate = (source_dir / text).resolve()
        if candidate.exists():
            return str(candidate)
    return text


def parse_preset(values: Any, name: str = "<dict>", source: str = "<dict>", source_dir: Path | None = None) -> Preset:
    """Validate a preset's mapping; every problem raises PresetError naming the field."""
    if not isinstance(values, dict):
        raise PresetError(source, "<top level>", f"must be a mapping of fields, got {type(values).__name__}")
    top = {"schema_version", "description", "potential", "committee", "dtype", "device", "skin", "dispersion"}
    _unknown(source, "", values, top)
    version = values.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise PresetError(source, "schema_version", f"this gdlphys reads preset schema 1..{SCHEMA_VERSION}, got {version!r}")

    committee_values = values.get("committee")
    if ("potential" in values) == (committee_values is not None):
        raise PresetError(source, "potential", "give exactly one of 'potential' (one model) or 'committee' (several)")
    committee = None
    if committee_values is not None:
        if not isinstance(committee_values, dict):
            raise PresetError(source, "committee", "must be a mapping with 'potentials' (a list) and optional 'max_force_std', 'on_exceed'")
        _unknown(source, "committee.", committee_values, {"potentials", "max_force_std", "on_exceed"})
        members = committee_values.get("potentials")
        if not isinstance(members, list) or len(members) < 2:
            raise PresetError(source, "committee.potentials", f"must list at least two potentials, got {members!r}")
        potentials = tuple(_resolve_member(source_dir, _string(source, f"committee.potentials[{i}]", m)) for i, m in enumerate(members))
        threshold = committee_values.get("max_force_std")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0):
            raise PresetError(source, "committee.max_force_std", f"must be a positive number in eV/Å, got {threshold!r}")
        on_exceed = _choice(source, "committee.on_exceed", committee_values.get("on_exceed", "warn"), _ON_EXCEED)
        committee = CommitteeSpec(float(threshold) if threshold is not None else None, on_exceed)
    else:
        potentials = (_resolve_member(source_dir, _string(source, "potential", values["potential"])),)

    dtype = _choice(source, "dtype", values.get("dtype", "float64"), _DTYPES)
    device = _string(source, "device", values.get("device", "auto"))
    if device != "auto" and not device.split(":")[0] in ("cpu", "cuda", "mps"):
        raise PresetError(source, "device", f"must be auto, cpu, cuda or cuda:N, got {device!r}")
    skin = values.get("skin", 0.0)
    if isinstance(skin, bool) or not isinstance(skin, (int, float)) or skin < 0 or skin > 3:
        raise PresetError(source, "skin", f"must be a number of Å in [0, 3], got {skin!r}")

    dispersion = None
    if values.get("dispersion") is not None:
        d = values["dispersion"]
        if not isinstance(d, dict):
            raise PresetError(source, "dispersion", "must be a mapping with 'functional' and optional 'damping'")
        _unknown(source, "dispersion.", d, {"functional", "damping"})
        dispersion = DispersionSpec(
            _string(source, "dispersion.functional", d.get("functional")),
            _choice(source, "dispersion.damping", d.get("damping", "d3bj"), _DAMPINGS),
        )
    description = values.get("description", "")
    if not isinstance(description, str):
        raise PresetError(source, "description", "must be a string")
    return Preset(name, potentials, description, dtype, device, float(skin), dispersion, committee, source)


def preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    for directory in shipped_dirs("ase_calculators"):
        for suffix in (".yaml", ".yml"):
            if (directory / f"{name_or_path}{suffix}").is_file():
                return directory / f"{name_or_path}{suffix}"
    raise FileNotFoundError(f"no preset file or shipped preset named {str(name_or_path)!r} (shipped: {', '.join(preset_names()) or 'none'})")


def names_a_preset(value) -> bool:
    """Whether ``value`` (a potential argument) is a preset: a YAML file or a shipped preset's name."""
    return isinstance(value, (str, Path)) and (str(value).endswith((".yaml", ".yml")) or str(value) in preset_names())


def preset_names() -> list[str]:
    return sorted({p.stem for d in shipped_dirs("ase_calculators") for p in d.glob("*.y*ml")})


def read_preset(name_or_path: str | Path) -> Preset:
    path = preset_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PresetError(str(path), "<yaml>", f"not valid YAML: {err}") from err
    return parse_preset(values, name=path.stem, source=str(path), source_dir=path.parent)


def build_calculator(preset: Preset):
    """The ASE calculator a preset describes."""
    from gdlphys.calculator import GDLCalculator

    dispersion = None
    if preset.dispersion is not None:
        try:
            from dftd3.ase import DFTD3
        except ImportError as err:
            raise PresetError(preset.source, "dispersion", "needs the 'dftd3' package (pip install dftd3)") from err
        try:
            dispersion = DFTD3(method=preset.dispersion.functional, damping=preset.dispersion.damping)
        except Exception as err:  # dftd3 raises its own error types for unknown functionals
            raise PresetError(preset.source, "dispersion.functional", f"dftd3 does not accept it: {err}") from err
    members = list(preset.potentials)
    committee = preset.committee
    return GDLCalculator(
        members if len(members) > 1 else members[0],
        device=preset.device,
        dtype=preset.dtype,
        skin=preset.skin,
        dispersion=dispersion,
        max_force_std=committee.max_force_std if committee else None,
        on_exceed=committee.on_exceed if committee else "warn",
    )


def load_calculator(name_or_path: str | Path):
    """``gdlphys.load_calculator``: a shipped preset's name or a preset file -> ready ASE calculator."""
    return build_calculator(read_preset(name_or_path))


__all__ = ["Preset", "PresetError", "build_calculator", "load_calculator", "names_a_preset", "parse_preset", "preset_names", "read_preset"]
