"""FTC complaint import benchmark: rows/s, database size and peak memory, in a fresh process.

Run: .venv/bin/python bench/bench_import.py
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FTC = ROOT.parent / "shared" / "data" / "ftc" / "ftc_dnc_api_complaints_2020-02-14_2021-04-21.csv.gz"


def main() -> None:
    if not FTC.exists():
        sys.exit(f"{FTC} is not available")
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "XDG_DATA_HOME": scratch}
        env.pop("CALLSHIELD_CONFIG", None)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "callshield", "import", str(FTC), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        summary = json.loads(result.stdout)
        database = Path(scratch) / "callshield" / "callshield.sqlite3"
        size = sum(p.stat().st_size for p in database.parent.glob("callshield.sqlite3*"))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"rows {summary['rows']:,}, accepted {summary['accepted']:,}, numbers {summary['numbers']:,}, "
        f"rejected {summary['rejected']}"
    )
    print(
        f"import: {summary['seconds']:.1f} s -> {summary['rows_per_second']:,} rows/s "
        f"(whole command {wall:.1f} s, start-up included)"
    )
    print(
        f"database {size / 1e6:.0f} MB; peak RSS {peak:.0f} MB; python {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
