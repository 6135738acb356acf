"""The pool of abusive caller numbers: real FTC-reported numbers, or a synthetic stand-in.

From the FTC Do-Not-Call complaint file (``ftc/ftc_dnc_api_complaints_*.csv.gz``) the pool keeps
every distinct NANP caller number (10 digits, or 11 with a leading 1, area code 2-9: 98% of rows) and
the counts of (victim area code, caller area code) pairs, which give neighbour spoofers their real
area-code behaviour (in 43% of complaints the caller's area code is the victim's).

Reading 3.2 M rows takes a few seconds, so the result is cached under ``$XDG_CACHE_HOME/callshield``
(default ``~/.cache/callshield``), keyed by the file's size and modification time. Without the file the
pool is synthetic (random NANP numbers from a fixed seed, 43% same-area pairs) and a warning is logged.
"""

from __future__ import annotations

import bisect
import gzip
import json
import logging
import os
import random
import tempfile
import zlib
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["FTC_FILE_GLOB", "NumberPool", "load_pool", "synthetic_pool"]

_log = logging.getLogger(__name__)

FTC_FILE_GLOB: Final = "ftc_dnc_api_complaints_*.csv.gz"
_CACHE_VERSION: Final = 1
_SYNTHETIC_NUMBERS: Final = 60_000
_SYNTHETIC_SAME_AREA: Final = 0.43


@dataclass(frozen=True, slots=True)
class NumberPool:
    """Caller numbers (10-digit NANP national numbers as ints, sorted, distinct) and area-code pairs."""

    numbers: array[int]
    pairs: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]
    """victim NPA -> (caller NPAs, cumulative counts) for weighted draws."""
    source: str
    """'ftc' or 'synthetic'."""
    description: dict[str, object]

    def __contains__(self, national: object) -> bool:
        if not isinstance(national, int):
            return False
        index = bisect.bisect_left(self.numbers, national)
        return index < len(self.numbers) and self.numbers[index] == national

    def draw(self, rng: random.Random) -> int:
        """One pool number, uniformly."""
        return self.numbers[rng.randrange(len(self.numbers))]

    def caller_npa(self, rng: random.Random, victim_npa: int) -> int:
        """A caller area code drawn from the complaints about victims in ``victim_npa``."""
        entry = self.pairs.get(victim_npa)
        if entry is None:
            return victim_npa if rng.random() < _SYNTHETIC_SAME_AREA else self.draw(rng) // 10**7
        callers, cumulative = entry
        pick = rng.random() * cumulative[-1]
        return callers[bisect.bisect_right(cumulative, pick)]

    def same_npa_share(self) -> float:
        """Share of pair counts where the caller's area code is the victim's (a check of the data)."""
        same = total = 0
        for victim, (callers, cumulative) in self.pairs.items():
            previous = 0
            for caller, running in zip(callers, cumulative, strict=True):
                if caller == victim:
                    same += running - previous
                previous = running
            total += cumulative[-1]
        return same / total if total else 0.0


def load_pool(
    ftc_dir: Path | None, *, cache_dir: Path | None = None, warn: Callable[[str], None] | None = None
) -> NumberPool:
    """The FTC pool from ``ftc_dir`` (cached), or the synthetic pool when it is absent: then a warning
    goes to ``warn`` (default: this module's logger)."""
    source = _find_ftc_file(ftc_dir)
    if source is None:
        message = (
            f"FTC complaint data not found in {ftc_dir if ftc_dir is not None else '(no folder given)'}: "
            "using a synthetic pool of abusive caller numbers"
        )
        (warn or _log.warning)(message)
        return synthetic_pool()
    stat = source.stat()
    cache_root = cache_dir if cache_dir is not None else _default_cache_dir()
    stem = f"ftc_pool_v{_CACHE_VERSION}_{stat.st_size}_{int(stat.st_mtime)}"
    numbers_path, meta_path = cache_root / f"{stem}.bin", cache_root / f"{stem}.json"
    if numbers_path.exists() and meta_path.exists():
        try:
            return _read_cache(numbers_path, meta_path)
        except (OSError, ValueError, KeyError) as exc:
            _log.warning("ignoring unreadable pool cache %s: %s", numbers_path, exc)
    try:
        numbers, pair_counts, rows = _read_ftc(source)
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt gzip file
        (warn or _log.warning)(f"cannot read {source}: {exc}: using a synthetic pool of abusive caller numbers")
        return synthetic_pool()
    meta = {"source": "ftc", "file": source.name, "rows": rows, "distinct_numbers": len(numbers),
            "pairs": [[v, c, n] for (v, c), n in sorted(pair_counts.items())]}  # fmt: skip
    try:
        _write_cache(numbers_path, meta_path, numbers, meta)
    except OSError as exc:
        _log.warning("cannot cache the FTC pool in %s: %s", cache_root, exc)
    return _pool(numbers, meta)


def synthetic_pool() -> NumberPool:
    """Random NANP numbers (fixed seed, independent of the simulation seed) and 43% same-area pairs."""
    rng = random.Random("callshield-synthetic-pool")
    numbers = sorted({rng.randrange(2, 10) * 10**9 + rng.randrange(10**9) for _ in range(_SYNTHETIC_NUMBERS)})
    areas = sorted({number // 10**7 for number in numbers})[:300]
    pair_counts: Counter[tuple[int, int]] = Counter()
    for victim in areas:
        pair_counts[victim, victim] = 43
        for caller in rng.sample(areas, 57):
            pair_counts[victim, caller] += 1
    meta = {"source": "synthetic", "rows": len(numbers), "distinct_numbers": len(numbers),
            "pairs": [[v, c, n] for (v, c), n in sorted(pair_counts.items())]}  # fmt: skip
    return _pool(array("q", numbers), meta)


def _find_ftc_file(ftc_dir: Path | None) -> Path | None:
    if ftc_dir is None or not ftc_dir.is_dir():
        return None
    matches = sorted(ftc_dir.glob(FTC_FILE_GLOB))
    return matches[-1] if matches else None


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callshield"


def _read_ftc(path: Path) -> tuple[array[int], Counter[tuple[int, int]], int]:
    """Distinct caller numbers and (victim NPA, caller NPA) counts; junk rows are skipped."""
    seen: set[int] = set()
    pairs: Counter[tuple[int, int]] = Counter()
    rows = 0
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as lines:
        next(lines, None)  # header
        for line in lines:
            rows += 1
            parts = line.rstrip("\r\n").split(",")
            if len(parts) != 3:
                continue
            number, victim = parts[1].strip(), parts[2].strip()
            if len(number) == 11 and number[0] == "1":
                number = number[1:]
            if len(number) != 10 or not (number.isascii() and number.isdigit()) or number[0] in "01":
                continue
            national = int(number)
            seen.add(national)
            if len(victim) == 3 and victim.isascii() and victim.isdigit() and victim[0] not in "01":
                pairs[int(victim), national // 10**7] += 1
    return array("q", sorted(seen)), pairs, rows


def _write_cache(numbers_path: Path, meta_path: Path, numbers: array[int], meta: dict[str, object]) -> None:
    numbers_path.parent.mkdir(parents=True, exist_ok=True)
    for path, payload in ((numbers_path, numbers.tobytes()), (meta_path, json.dumps(meta).encode())):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temporary, path)


def _read_cache(numbers_path: Path, meta_path: Path) -> NumberPool:
    numbers = array("q")
    numbers.frombytes(numbers_path.read_bytes())
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if len(numbers) != meta["distinct_numbers"]:
        raise ValueError("size mismatch")
    return _pool(numbers, meta)


def _pool(numbers: array[int], meta: dict[str, object]) -> NumberPool:
    grouped: dict[int, list[tuple[int, int]]] = {}
    raw_pairs = meta["pairs"]
    assert isinstance(raw_pairs, list)
    for victim, caller, count in raw_pairs:
        grouped.setdefault(int(victim), []).append((int(caller), int(count)))
    pairs: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for victim, entries in grouped.items():
        running, cumulative = 0, []
        for _, count in entries:
            running += count
            cumulative.append(running)
        pairs[victim] = (tuple(caller for caller, _ in entries), tuple(cumulative))
    description = {key: value for key, value in meta.items() if key != "pairs"}
    return NumberPool(numbers=numbers, pairs=pairs, source=str(meta["source"]), description=description)
