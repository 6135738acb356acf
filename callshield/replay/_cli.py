"""``callshield replay``: a thin command over :mod:`callshield.replay`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from callshield.config import Config, load_config
from callshield.errors import ConfigError, StoreError
from callshield.replay._cdr import CdrError, CdrRead, read_cdr, zone
from callshield.replay._labels import Labels, read_labels
from callshield.replay._report import build_report, format_report
from callshield.replay._runner import replay
from callshield.replay._verdicts import VerdictRow, VerdictWriter

_PROGRESS_EVERY = 10_000
# The exit codes of callshield.cli (not imported: callshield.cli imports this module).
EXIT_USAGE, EXIT_CONFIG, EXIT_DATABASE, EXIT_INPUT = 2, 3, 4, 5


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"callshield: error: {message}", err=True)
    sys.exit(code)


@click.command(name="replay")
@click.argument("cdr", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verdicts CSV to write (one row per call).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config to try (default: the global --config, $CALLSHIELD_CONFIG, else built-in defaults).",
)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), help="labels.csv of generated traffic.")
@click.option(
    "--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), help="Write plots and summary.md here."
)
@click.option(
    "--timezone", default="UTC", show_default=True, help="Time zone of the CDR's times (cdr_csv writes local time)."
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep the replay's database in FILE (an existing callshield database is the starting state). "
    "Default: a temporary database, deleted afterwards; the node's database is never used.",
)
@click.option(
    "--context",
    "contexts",
    multiple=True,
    help="Replay only rows whose dcontext is this (the inbound context, e.g. from-trunk; repeatable). Default: all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def replay_command(
    ctx: click.Context,
    cdr: Path,
    out: Path,
    config_path: str | None,
    labels: Path | None,
    report_dir: Path | None,
    timezone: str,
    state: Path | None,
    contexts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replay an Asterisk CDR (Master.csv, plain or gzip) through the decision engine.

    Each call is decided at its start and its real outcome is fed back at its end, in time order,
    on simulated time and a scratch database: a safe way to see what a configuration would do.
    Malformed rows are counted and skipped. With --labels, prints how many abusive calls would be
    blocked or screened and how many legitimate ones (by the decided action, so shadow mode works).
    """
    started = time.perf_counter()
    try:
        zone(timezone)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    global_config = getattr(ctx.obj, "config_path", None)
    if getattr(ctx.obj, "database", None) and state is None:
        click.echo("callshield: note: replay never uses the node database (--db); --state FILE keeps its own", err=True)
    try:
        config = load_config(config_path or global_config)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    read, truth = _read_inputs(cdr, labels, timezone, contexts)
    rows = _replay_to(out, read, truth, config, state)
    replayed = time.perf_counter() - started
    report = build_report(
        rows,
        truth,
        policy=config.policy,
        rejected=read.rejected,
        labels_rejected=truth.rejected if truth is not None else None,
    )
    if report_dir is not None:
        from callshield.replay._plots import write_report_dir

        try:
            write_report_dir(report, report_dir)
        except OSError as exc:
            _fail(f"cannot write the report in {report_dir}: {exc.strerror or exc}", EXIT_INPUT)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_report(report))
    if read.other_context:
        click.echo(f"{read.other_context} rows in other contexts than {', '.join(contexts)} left out", err=True)
    click.echo(
        f"replayed {len(rows)} calls ({read.rows} rows read) in {replayed:.1f} s "
        f"({read.rows / max(replayed, 1e-9):,.0f} rows/s); verdicts in {out}"
        + (f"; report in {report_dir}" if report_dir is not None else ""),
        err=True,
    )


def _read_inputs(
    cdr: Path, labels: Path | None, timezone: str, contexts: tuple[str, ...]
) -> tuple[CdrRead, Labels | None]:
    try:
        read = read_cdr(cdr, timezone=timezone, contexts=contexts or None)
        truth = read_labels(labels) if labels is not None else None
    except CdrError as exc:
        _fail(str(exc), EXIT_INPUT)
    if not read.calls:
        parts = [f"{reason} {count}" for reason, count in read.rejected.most_common()]
        if read.other_context:
            parts.append(f"{read.other_context} rows in other contexts than {', '.join(contexts)}")
        why = ", ".join(parts) or "the file is empty"
        hint = " (a CEL file? replay reads cdr_csv's Master.csv)" if read.rejected.get("columns") else ""
        _fail(f"no usable CDR rows in {cdr}: {why}{hint}", EXIT_INPUT)
    return read, truth


def _replay_to(out: Path, read: CdrRead, truth: Labels | None, config: Config, state: Path | None) -> list[VerdictRow]:
    """Replay, writing the verdicts file as it goes (a progress bar on a terminal)."""
    from tqdm import tqdm  # here: every callshield command imports this module

    rows: list[VerdictRow] = []
    try:
        with (
            out.open("w", encoding="utf-8", newline="") as text,
            tqdm(total=len(read.calls), unit="call", desc="replay", disable=None, file=sys.stderr) as bar,
        ):
            writer = VerdictWriter(text, truth)
            for record in replay(read.calls, config=config, database=state):
                rows.append(writer.write(record))
                if not len(rows) % _PROGRESS_EVERY:
                    bar.update(_PROGRESS_EVERY)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_INPUT)
    except StoreError as exc:
        _fail(str(exc), EXIT_DATABASE)
    return rows
