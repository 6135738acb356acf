"""Family mixes: the default parameters of every family, named presets, and TOML mix files.

A mix is a mapping ``family -> {parameter: value}``. Every family and every parameter has a default
(:data:`DEFAULTS`); a preset or a TOML file only overrides some of them. Values are checked against
the default's type and range, unknown families and parameters are rejected with a message naming them.

Volumes (``calls_per_hour``, ``callers``, ``campaigns``...) are for a node of 2,000 DIDs at scale 1;
the generator multiplies them by ``scale * dids / 2000``.

TOML mix file::

    base = "default"            # optional: the preset the file starts from
    name = "my-mix"             # optional

    [families.robocall]
    campaigns = 12
    answer = 0.25

    [families.wangiri]
    enabled = false
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from callshield.errors import ConfigError

__all__ = [
    "ABUSIVE_FAMILIES",
    "DEFAULTS",
    "FAMILIES",
    "LEGIT_FAMILIES",
    "PRESETS",
    "PROFILES",
    "Mix",
    "MixError",
    "Value",
    "load_mix",
]

Value = int | float | str | bool

MAX_CALL_SECONDS: Final = 86_400
"""Longest ring + talk time a family may produce (the CDR writer relies on it)."""
PROFILES: Final = ("personal", "business", "robocall", "evening", "night", "flat")
"""Names of the diurnal/weekly profiles (see ``_time.py``)."""


class MixError(ConfigError):
    """A mix preset name or mix file is invalid; the message names the family and parameter."""


def _outcome(
    answer: float,
    busy: float,
    failed: float,
    billsec_median: float,
    billsec_sigma: float,
    profile: str,
    *,
    ring_min: int = 3,
    ring_max: int = 20,
    noanswer_ring_min: int = 10,
    noanswer_ring_max: int = 32,
    billsec_max: int = 7200,
) -> dict[str, Value]:
    return {
        "answer": answer,
        "busy": busy,
        "failed": failed,
        "billsec_median": billsec_median,
        "billsec_sigma": billsec_sigma,
        "billsec_max": billsec_max,
        "ring_min": ring_min,
        "ring_max": ring_max,
        "noanswer_ring_min": noanswer_ring_min,
        "noanswer_ring_max": noanswer_ring_max,
        "profile": profile,
    }


LEGIT_FAMILIES: Final = (
    "personal",
    "repeat",
    "business",
    "callback",
    "short",
    "burst",
    "international",
    "withheld",
    "local-exchange",
)
ABUSIVE_FAMILIES: Final = (
    "robocall",
    "sweep",
    "neighbour-spoof",
    "snowshoe",
    "wangiri",
    "telemarketer",
    "spoofed-business",
    "slow",
)
FAMILIES: Final = LEGIT_FAMILIES + ABUSIVE_FAMILIES

DEFAULTS: Final[dict[str, dict[str, Value]]] = {
    # --- legitimate -------------------------------------------------------------------------------
    "personal": {
        "enabled": True,
        "calls_per_hour": 1400.0,
        "callers": 6000,
        "callees_max": 3,
        "home_share": 0.8,
        "wireless_cnam": 0.45,
        **_outcome(0.70, 0.04, 0.01, 150.0, 1.1, "personal"),
    },
    "repeat": {
        "enabled": True,
        "calls_per_hour": 150.0,
        "callers": 300,
        "redial_after_miss": 0.6,
        "redial_delay_median": 120.0,
        **_outcome(0.62, 0.06, 0.01, 240.0, 1.0, "personal"),
    },
    "business": {
        "enabled": True,
        "calls_per_hour": 500.0,
        "businesses": 40,
        **_outcome(0.55, 0.03, 0.01, 60.0, 0.8, "business", billsec_max=1800),
    },
    "callback": {
        "enabled": True,
        "calls_per_hour": 150.0,
        "delay_median": 1200.0,
        "delay_sigma": 1.3,
        "toll_free_share": 0.3,
        **_outcome(0.85, 0.03, 0.01, 180.0, 1.0, "business"),
    },
    "short": {
        "enabled": True,
        "calls_per_hour": 200.0,
        "callers": 2500,
        **_outcome(0.6, 0.0, 0.0, 4.0, 0.5, "personal", noanswer_ring_min=2, noanswer_ring_max=8, billsec_max=12),
    },
    "burst": {
        "enabled": True,
        "bursts_per_day": 3.0,
        "callers_per_burst": 300,
        "burst_minutes": 20.0,
        "target_dids": 3,
        **_outcome(0.55, 0.30, 0.02, 90.0, 0.9, "business"),
    },
    "international": {
        "enabled": True,
        "calls_per_hour": 60.0,
        "callers": 300,
        **_outcome(0.65, 0.03, 0.05, 600.0, 0.9, "evening"),
    },
    "withheld": {
        "enabled": True,
        "calls_per_hour": 100.0,
        "callers": 400,
        **_outcome(0.55, 0.04, 0.01, 120.0, 1.0, "business"),
    },
    "local-exchange": {
        "enabled": True,
        "calls_per_hour": 120.0,
        "callers": 600,
        **_outcome(0.68, 0.04, 0.01, 150.0, 1.0, "personal"),
    },
    # --- abusive ----------------------------------------------------------------------------------
    "robocall": {
        "enabled": True,
        "campaigns": 8,
        "calls_per_hour": 40.0,
        "numbers_per_campaign": 40,
        **_outcome(0.35, 0.03, 0.05, 20.0, 0.7, "robocall", billsec_max=120),
    },
    "sweep": {
        "enabled": True,
        "campaigns": 3,
        "pace_seconds": 4.0,
        "range_blocks": 10,
        "runs_per_campaign": 4,
        "rotate_every": 50,
        "numbers_per_campaign": 2,
        **_outcome(0.30, 0.02, 0.05, 6.0, 0.6, "robocall", billsec_max=60),
    },
    "neighbour-spoof": {
        "enabled": True,
        "campaigns": 5,
        "calls_per_hour": 40.0,
        "same_exchange": 0.8,
        **_outcome(0.40, 0.03, 0.03, 25.0, 0.9, "robocall", billsec_max=600),
    },
    "snowshoe": {
        "enabled": True,
        "campaigns": 2,
        "calls_per_hour": 40.0,
        "numbers_per_campaign": 400,
        "max_calls_per_number": 3,
        **_outcome(0.30, 0.03, 0.05, 15.0, 0.8, "robocall", billsec_max=300),
    },
    "wangiri": {
        "enabled": True,
        "campaigns": 2,
        "calls_per_burst": 600,
        "burst_hours": 2.0,
        "numbers_per_campaign": 60,
        **_outcome(0.0, 0.0, 0.0, 1.0, 0.1, "night", noanswer_ring_min=1, noanswer_ring_max=2, billsec_max=1),
    },
    "telemarketer": {
        "enabled": True,
        "campaigns": 5,
        "numbers_per_campaign": 2,
        "targets_per_campaign": 150,
        "attempts_per_target": 2.0,
        **_outcome(0.40, 0.04, 0.02, 40.0, 0.9, "robocall", billsec_max=900),
    },
    "spoofed-business": {
        "enabled": True,
        "campaigns": 2,
        "calls_per_hour": 15.0,
        **_outcome(0.40, 0.03, 0.03, 30.0, 0.9, "robocall", billsec_max=600),
    },
    "slow": {
        "enabled": True,
        "campaigns": 4,
        "calls_per_hour": 40.0,
        "numbers_per_campaign": 60,
        "min_gap_per_number": 2400.0,
        **_outcome(0.30, 0.03, 0.03, 20.0, 0.8, "robocall", billsec_max=300),
    },
}

_PRESET_OVERRIDES: Final[dict[str, dict[str, dict[str, Value]]]] = {
    "default": {},
    "spoof-heavy": {
        "neighbour-spoof": {"campaigns": 14, "calls_per_hour": 50.0, "same_exchange": 0.9},
        "spoofed-business": {"campaigns": 6},
        "robocall": {"campaigns": 4},
        "snowshoe": {"campaigns": 1},
    },
    "snowshoe-heavy": {
        "snowshoe": {"campaigns": 6, "numbers_per_campaign": 700, "max_calls_per_number": 2},
        "slow": {"campaigns": 8, "min_gap_per_number": 3000.0},
        "robocall": {"campaigns": 4, "numbers_per_campaign": 120},
        "neighbour-spoof": {"campaigns": 2},
    },
    "quiet": {
        "robocall": {"campaigns": 2, "calls_per_hour": 20.0},
        "sweep": {"campaigns": 1, "pace_seconds": 10.0},
        "neighbour-spoof": {"campaigns": 1},
        "snowshoe": {"campaigns": 1, "calls_per_hour": 20.0},
        "wangiri": {"campaigns": 1, "calls_per_burst": 200},
        "telemarketer": {"campaigns": 2},
        "spoofed-business": {"campaigns": 1},
        "slow": {"campaigns": 2},
        "personal": {"calls_per_hour": 1600.0},
    },
}

PRESETS: Final = tuple(_PRESET_OVERRIDES)


@dataclass(frozen=True, slots=True)
class Mix:
    """A complete, validated mix: every family with every parameter."""

    name: str
    families: Mapping[str, Mapping[str, Value]]

    def param(self, family: str, key: str) -> Value:
        """One parameter of one family."""
        return self.families[family][key]

    def to_dict(self) -> dict[str, dict[str, Value]]:
        """A plain copy (for simulation.json)."""
        return {family: dict(params) for family, params in self.families.items()}


def load_mix(spec: str) -> Mix:
    """The mix named ``spec`` (a preset) or read from ``spec`` when it ends in ``.toml``.

    Raises :class:`MixError` naming the problem.
    """
    if spec in _PRESET_OVERRIDES:
        return _build(spec, _PRESET_OVERRIDES[spec], source=f"preset {spec!r}")
    if spec.endswith(".toml"):
        return _from_file(Path(spec))
    raise MixError(f"unknown mix {spec!r}: expected one of {', '.join(PRESETS)} or a .toml file")


def _from_file(path: Path) -> Mix:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MixError(f"cannot read mix file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MixError(f"mix file {path} is not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MixError(f"mix file {path}: invalid TOML: {exc}") from exc
    unknown = set(data) - {"base", "name", "families"}
    if unknown:
        raise MixError(f"mix file {path}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                       "(expected base, name, families)")  # fmt: skip
    base = data.get("base", "default")
    if not isinstance(base, str) or base not in _PRESET_OVERRIDES:
        raise MixError(f"mix file {path}: base must be one of {', '.join(PRESETS)}, got {base!r}")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise MixError(f"mix file {path}: name must be a string")
    families = data.get("families", {})
    if not isinstance(families, dict):
        raise MixError(f"mix file {path}: [families] must be a table")
    overrides: dict[str, dict[str, Value]] = copy.deepcopy(_PRESET_OVERRIDES[base])
    for family, params in families.items():
        if not isinstance(params, dict):
            raise MixError(f"mix file {path}: families.{family} must be a table")
        overrides.setdefault(family, {}).update(params)
    return _build(name, overrides, source=f"mix file {path}")


def _build(name: str, overrides: Mapping[str, Mapping[str, object]], *, source: str) -> Mix:
    families = copy.deepcopy(DEFAULTS)
    for family, params in overrides.items():
        if family not in families:
            raise MixError(f"{source}: unknown family {family!r} (known: {', '.join(FAMILIES)})")
        for key, value in params.items():
            families[family][key] = _checked(source, family, key, value)
    for family, params in families.items():
        total = float(params["answer"]) + float(params["busy"]) + float(params["failed"])
        if total > 1.0 + 1e-9:
            raise MixError(f"{source}: families.{family}: answer + busy + failed = {total:g} > 1")
        longest = max(int(params["ring_max"]), int(params["noanswer_ring_max"])) + int(params["billsec_max"])
        if longest > MAX_CALL_SECONDS:
            raise MixError(f"{source}: families.{family}: calls may last {longest} s, more than {MAX_CALL_SECONDS}")
        for low, high in (("ring_min", "ring_max"), ("noanswer_ring_min", "noanswer_ring_max")):
            if int(params[low]) > int(params[high]):
                raise MixError(f"{source}: families.{family}: {low} > {high}")
    return Mix(name=name, families=families)


_PROBABILITIES: Final = frozenset(
    {"answer", "busy", "failed", "home_share", "wireless_cnam", "redial_after_miss", "toll_free_share",
     "same_exchange"}
)  # fmt: skip


def _checked(source: str, family: str, key: str, value: object) -> Value:
    where = f"{source}: families.{family}.{key}"
    default = DEFAULTS[family].get(key)
    if default is None:
        raise MixError(f"{where}: unknown parameter (known: {', '.join(DEFAULTS[family])})")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise MixError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str) or value not in PROFILES:
            raise MixError(f"{where}: expected one of {', '.join(PROFILES)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MixError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, int) and not isinstance(value, int):
        raise MixError(f"{where}: expected an integer, got {value!r}")
    if value < 0:
        raise MixError(f"{where}: must be >= 0, got {value!r}")
    if key in _PROBABILITIES and value > 1:
        raise MixError(f"{where}: a probability must be between 0 and 1, got {value!r}")
    return float(value) if isinstance(default, float) else int(value)
