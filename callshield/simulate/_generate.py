"""Run every family of a mix over a simulated node and put the calls in time order."""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from callshield.simulate._call import ANSWERED, SimCall
from callshield.simulate._families import FAMILY_FUNCTIONS, Business, Context
from callshield.simulate._mix import ABUSIVE_FAMILIES, FAMILIES, Mix, load_mix
from callshield.simulate._pool import NumberPool
from callshield.simulate._time import Timeline
from callshield.simulate._world import Did, Numbers, build_dids

__all__ = ["GENERATOR_VERSION", "Simulation", "SimulationOptions", "simulate"]

GENERATOR_VERSION: Final = "callshield-simulate/2"
"""Bumped whenever the same seed and options give different files (2: batched draws, capped activity,
one channel counter, all-day snowshoe, fresh international numbers)."""
DEFAULT_START: Final = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
DIDS_PER_VOLUME_UNIT: Final = 2000
MAX_DIDS: Final = 100_000
MAX_HOURS: Final = 24 * 31


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    """What to simulate. Volumes scale with ``scale * dids / 2000``."""

    seed: int = 1
    hours: int = 24
    start: datetime = DEFAULT_START
    dids: int = 2000
    mix: Mix = field(default_factory=lambda: load_mix("default"))
    scale: float = 1.0
    timezone: str = "America/Chicago"
    """The node's local time zone: diurnal profiles are in local time; the CDR is written in UTC."""

    def __post_init__(self) -> None:
        if not 1 <= self.hours <= MAX_HOURS:
            raise ValueError(f"hours must be between 1 and {MAX_HOURS}, got {self.hours}")
        if not 1 <= self.dids <= MAX_DIDS:
            raise ValueError(f"dids must be between 1 and {MAX_DIDS}, got {self.dids}")
        if not 0 <= self.scale <= 100:
            raise ValueError(f"scale must be between 0 and 100, got {self.scale}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc


@dataclass(frozen=True, slots=True)
class Simulation:
    """The generated traffic: calls in time order (uniqueids assigned), the node's DIDs, and facts."""

    options: SimulationOptions
    dids: list[Did]
    calls: list[SimCall]
    pool: NumberPool
    first_channel: int
    """Asterisk's global channel counter at the first call (a running PBX's counter is far from 0)."""
    businesses: list[Business]
    generation_seconds: float

    def counts(self) -> dict[str, dict[str, int]]:
        """Per family: rows, answered, distinct campaigns and distinct caller numbers."""
        rows: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        campaigns: dict[str, set[str]] = {family: set() for family in FAMILIES}
        callers: dict[str, set[str | None]] = {family: set() for family in FAMILIES}
        for call in self.calls:
            family = call.family
            rows[family] += 1
            if call.disposition == ANSWERED:
                answered[family] += 1
            campaigns[family].add(call.campaign)
            callers[family].add(call.caller)
        return {
            family: {
                "rows": rows[family],
                "answered": answered[family],
                "campaigns": len(campaigns[family]),
                "caller_numbers": len(callers[family] - {None}),
            }
            for family in FAMILIES
        }


def simulate(options: SimulationOptions, pool: NumberPool) -> Simulation:
    """Generate the traffic of ``options`` (deterministic: same options and pool, same calls)."""
    began = time.perf_counter()
    world_rng = random.Random(f"callshield-simulate:{options.seed}:world")
    dids = build_dids(world_rng, options.dids)
    timeline = Timeline(options.start, options.hours, options.timezone)
    numbers = Numbers(world_rng, pool, frozenset(did.national for did in dids), f"callshield-simulate:{options.seed}")
    volume = options.scale * options.dids / DIDS_PER_VOLUME_UNIT
    businesses: list[Business] = []
    calls: list[SimCall] = []
    for family in FAMILIES:  # fixed order: 'business' runs before 'spoofed-business'
        params = options.mix.families[family]
        if not params["enabled"]:
            continue
        key = f"callshield-simulate:{options.seed}:{family}"
        rng = random.Random(key)
        generator = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
        context = Context(
            family=family,
            abusive=family in ABUSIVE_FAMILIES,
            params=params,
            rng=rng,
            generator=generator,
            timeline=timeline,
            dids=dids,
            numbers=numbers.for_family(rng),
            pool=pool,
            volume=volume,
            businesses=businesses,
        )
        FAMILY_FUNCTIONS[family](context)
        calls.extend(context.calls)
    calls.sort(key=attrgetter("start"))  # stable: ties keep the generation order
    base = world_rng.randrange(1, 5000)
    for sequence, call in enumerate(calls, start=base):
        call.uniqueid = f"{call.start}.{sequence}"
    first_channel = world_rng.randrange(0x1000, 0x8000_0000)
    return Simulation(
        options=options,
        dids=dids,
        calls=calls,
        pool=pool,
        first_channel=first_channel,
        businesses=businesses,
        generation_seconds=time.perf_counter() - began,
    )
