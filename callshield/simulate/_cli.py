"""``callshield simulate``: the click command (registered in ``callshield/cli.py``).

Heavy imports happen inside the command, so ``callshield --help`` stays fast.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import click

__all__ = ["simulate_command"]


def _default_ftc_dir() -> Path:
    """$CALLSHIELD_SHARED_DATA/ftc, else the shared data beside a development checkout."""
    env = os.environ.get("CALLSHIELD_SHARED_DATA")
    if env:
        return Path(env) / "ftc"
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "ftc"


def _parse_start(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-11-02T00:00:00Z") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@click.command(name="simulate")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for Master.csv, labels.csv and simulation.json (created if missing).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed: same seed, same bytes.")
@click.option("--hours", type=click.IntRange(1, 24 * 31), default=24, show_default=True, help="Length of the traffic.")
@click.option(
    "--start",
    "start_text",
    default="2026-11-02T00:00:00Z",
    show_default=True,
    help="Start time (ISO 8601; naive times are UTC).",
)
@click.option(
    "--dids",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="DIDs the node owns (blocks of 100 consecutive numbers); volumes scale with it.",
)
@click.option(
    "--mix",
    "mix_spec",
    default="default",
    show_default=True,
    help="A preset (default, spoof-heavy, snowshoe-heavy, quiet) or a mix file FILE.toml.",
)
@click.option("--scale", type=click.FloatRange(0, 100), default=1.0, show_default=True, help="Multiplies volume.")
@click.option(
    "--timezone",
    default="America/Chicago",
    show_default=True,
    help="The node's local time zone (diurnal profiles); the CDR is written in UTC.",
)
@click.option(
    "--ftc",
    "ftc_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with the FTC complaint file (default: $CALLSHIELD_SHARED_DATA/ftc or ../shared/data/ftc).",
)
@click.option("--synthetic-pool", is_flag=True, help="Use synthetic abusive numbers even when the FTC data exists.")
def simulate_command(
    out_dir: Path,
    seed: int,
    hours: int,
    start_text: str,
    dids: int,
    mix_spec: str,
    scale: float,
    timezone: str,
    ftc_dir: Path | None,
    synthetic_pool: bool,
) -> None:
    """Generate labelled inbound traffic: an Asterisk Master.csv CDR (UTC times) plus labels.csv.

    The calls are as they happened without any firewall; `callshield replay` decides them later.
    """
    from callshield import simulate as sim

    start = _parse_start(start_text)
    mix = sim.load_mix(mix_spec)  # MixError is a ConfigError: exit code 3
    try:
        options = sim.SimulationOptions(
            seed=seed, hours=hours, start=start, dids=dids, mix=mix, scale=scale, timezone=timezone
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    began = time.perf_counter()
    if synthetic_pool:
        pool = sim.synthetic_pool()
    else:
        folder = ftc_dir if ftc_dir is not None else _default_ftc_dir()
        pool = sim.load_pool(folder, warn=lambda message: click.echo(f"callshield: warning: {message}", err=True))
    pool_seconds = time.perf_counter() - began
    began = time.perf_counter()
    simulation = sim.simulate(options, pool)
    try:
        sim.write_simulation(out_dir, simulation)
    except OSError as exc:
        raise click.ClickException(f"cannot write the simulation to {out_dir}: {exc.strerror or exc}") from exc
    seconds = time.perf_counter() - began
    abusive = sum(call.abusive for call in simulation.calls)
    rows = len(simulation.calls)
    click.echo(
        f"wrote {rows} calls ({abusive} abusive, {rows - abusive} legit) to {out_dir / sim.CDR_FILE}, "
        f"{sim.LABELS_FILE}, {sim.METADATA_FILE}; mix {mix.name!r}, seed {seed}, pool {pool.source} "
        f"({pool_seconds:.2f} s); generated and written in {seconds:.2f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
