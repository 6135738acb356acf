"""Write a simulation: Master.csv (the CDR), labels.csv and simulation.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, TextIO

from callshield.simulate._cdr import write_cdr
from callshield.simulate._generate import GENERATOR_VERSION, Simulation

__all__ = ["CDR_FILE", "LABELS_FILE", "LABELS_HEADER", "METADATA_FILE", "metadata", "write_labels", "write_simulation"]

CDR_FILE: Final = "Master.csv"
LABELS_FILE: Final = "labels.csv"
METADATA_FILE: Final = "simulation.json"
LABELS_HEADER: Final = "uniqueid,label,family,campaign"


def write_labels(out: TextIO, simulation: Simulation) -> int:
    """One row per call: uniqueid, legit|abusive, family, campaign (family and campaign ids have no commas)."""
    write = out.write
    write(LABELS_HEADER + "\n")
    for call in simulation.calls:
        write(f"{call.uniqueid},{'abusive' if call.abusive else 'legit'},{call.family},{call.campaign}\n")
    return len(simulation.calls)


def metadata(simulation: Simulation) -> dict[str, object]:
    """What simulation.json holds: everything needed to regenerate the files, and counts. No timings,
    so that the same seed gives byte-identical files."""
    options = simulation.options
    blocks: dict[tuple[int, str], int] = {}
    for did in simulation.dids:
        key = (did.national // 100 * 100, did.trunk.name)
        blocks[key] = blocks.get(key, 0) + 1
    labels = {"legit": 0, "abusive": 0}
    for call in simulation.calls:
        labels["abusive" if call.abusive else "legit"] += 1
    return {
        "generator": GENERATOR_VERSION,
        "seed": options.seed,
        "parameters": {
            "hours": options.hours,
            "start": options.start.isoformat().replace("+00:00", "Z"),
            "dids": options.dids,
            "scale": options.scale,
            "timezone": options.timezone,
            "cdr_times": "UTC",
        },
        "mix": {"name": options.mix.name, "families": options.mix.to_dict()},
        "pool": simulation.pool.description,
        "rows": len(simulation.calls),
        "labels": labels,
        "counts": simulation.counts(),
        "did_blocks": [
            {"first": f"+1{first}", "size": size, "trunk": trunk} for (first, trunk), size in sorted(blocks.items())
        ],
        "trunks": {
            did.trunk.name: {
                "dst_format": did.trunk.nanp_form,
                "src_nanp": did.trunk.nanp_form,
                "src_international": did.trunk.intl_form,
            }
            for did in simulation.dids
        },
        "files": {"cdr": CDR_FILE, "labels": LABELS_FILE},
    }


def write_simulation(directory: Path, simulation: Simulation) -> None:
    """Write the three files into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / CDR_FILE).open("w", encoding="utf-8", newline="") as out:
        write_cdr(out, simulation.calls, simulation.dids, simulation.first_channel)
    with (directory / LABELS_FILE).open("w", encoding="utf-8", newline="") as out:
        write_labels(out, simulation)
    text = json.dumps(metadata(simulation), indent=2, sort_keys=False, ensure_ascii=False)
    (directory / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
