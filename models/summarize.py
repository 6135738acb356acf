"""Markdown tables from build/model/report-*/report.json (models/build.py's evaluation) for MODEL.md.

Run: .venv/bin/python models/summarize.py [build/model]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def load(folder: Path) -> dict[str, dict[str, object]]:
    reports: dict[str, dict[str, object]] = {}
    for path in sorted(folder.glob("report-*/report.json")):
        reports[path.parent.name.removeprefix("report-")] = json.loads(path.read_text())
    return reports


def delay(detection: dict[str, object]) -> str:
    median = detection.get("median")
    never = detection.get("never_detected", 0)
    return f"{median if median is not None else 'not reached'} (never: {never})"


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/model")
    reports = load(folder)
    print("| traffic | scorer | abusive caught | after first 10 | legit screened | legit blocked | median delay |")
    print("|---|---|---|---|---|---|---|")
    for name, report in reports.items():
        labelled = report["labelled"]
        assert isinstance(labelled, dict)
        traffic, _, scorer = name.rpartition("-")
        print(
            f"| {traffic.removeprefix('sim-')} | {scorer} | {pct(labelled['abusive']['caught_share'])} | "
            f"{pct(labelled['abusive_after_first_10']['caught_share'])} | {pct(labelled['legit']['screened_share'])} | "
            f"{pct(labelled['legit']['blocked_share'])} | {delay(labelled['detection'])} |"
        )
    print()
    families: dict[str, dict[str, list[str]]] = {}
    for name, report in reports.items():
        labelled = report["labelled"]
        assert isinstance(labelled, dict)
        scorer = name.rpartition("-")[2]
        for family in labelled["families"]:
            key = f"{family['label']}/{family['family']}"
            share = family["after_first_10"] if family["label"] == "abusive" else family["share"]
            value = share["caught_share"]
            families.setdefault(key, {}).setdefault(scorer, []).append(pct(value))
    print("| family | rules (per evaluation set) | model (per evaluation set) |")
    print("|---|---|---|")
    for key in sorted(families):
        print(f"| {key} | {' '.join(families[key].get('rules', []))} | {' '.join(families[key].get('model', []))} |")


if __name__ == "__main__":
    main()
