"""Labelled inbound traffic for a simulated node: ``callshield simulate``.

Families of legitimate and abusive callers (see ``docs/simulate.md``) are generated over a node's DIDs
and written as an Asterisk ``Master.csv`` CDR, a ``labels.csv`` keyed by ``uniqueid`` and a
``simulation.json`` describing the run. Everything is seeded: the same options give the same bytes.
"""

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
from callshield.simulate._output import CDR_FILE, LABELS_FILE, METADATA_FILE, metadata, write_labels, write_simulation
from callshield.simulate._pool import NumberPool, load_pool, synthetic_pool

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
