"""Labelled inbound traffic for a simulated node: ``callshield simulate``.

Families of legitimate and abusive callers (see ``docs/simulate.md``) are generated over a node's DIDs
and written as an Asterisk ``Master.csv`` CDR, a ``labels.csv`` keyed by ``uniqueid`` and a
``simulation.json`` describing the run. Everything is seeded: the same options give the same bytes.

The names below are loaded on first use (PEP 562): the ``callshield`` command registers
``simulate`` from ``_cli.py`` without importing numpy and the generator into every other command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from callshield.simulate._call import SimCall
    from callshield.simulate._cdr import CDR_COLUMNS, write_cdr
    from callshield.simulate._generate import GENERATOR_VERSION, Simulation, SimulationOptions, simulate
    from callshield.simulate._mix import (
        ABUSIVE_FAMILIES,
        DEFAULTS,
        FAMILIES,
        LEGIT_FAMILIES,
        PRESETS,
        Mix,
        MixError,
        load_mix,
    )
    from callshield.simulate._output import (
        CDR_FILE,
        LABELS_FILE,
        METADATA_FILE,
        metadata,
        write_labels,
        write_simulation,
    )
    from callshield.simulate._pool import NumberPool, load_pool, synthetic_pool

_SOURCES: Final[dict[str, str]] = {
    "SimCall": "_call",
    "CDR_COLUMNS": "_cdr",
    "write_cdr": "_cdr",
    "GENERATOR_VERSION": "_generate",
    "Simulation": "_generate",
    "SimulationOptions": "_generate",
    "simulate": "_generate",
    "ABUSIVE_FAMILIES": "_mix",
    "DEFAULTS": "_mix",
    "FAMILIES": "_mix",
    "LEGIT_FAMILIES": "_mix",
    "PRESETS": "_mix",
    "Mix": "_mix",
    "MixError": "_mix",
    "load_mix": "_mix",
    "CDR_FILE": "_output",
    "LABELS_FILE": "_output",
    "METADATA_FILE": "_output",
    "metadata": "_output",
    "write_labels": "_output",
    "write_simulation": "_output",
    "NumberPool": "_pool",
    "load_pool": "_pool",
    "synthetic_pool": "_pool",
}

__all__ = [
    "ABUSIVE_FAMILIES",
    "CDR_COLUMNS",
    "CDR_FILE",
    "DEFAULTS",
    "FAMILIES",
    "GENERATOR_VERSION",
    "LABELS_FILE",
    "LEGIT_FAMILIES",
    "METADATA_FILE",
    "PRESETS",
    "Mix",
    "MixError",
    "NumberPool",
    "SimCall",
    "Simulation",
    "SimulationOptions",
    "load_mix",
    "load_pool",
    "metadata",
    "simulate",
    "synthetic_pool",
    "write_cdr",
    "write_labels",
    "write_simulation",
]


def __getattr__(name: str) -> object:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
