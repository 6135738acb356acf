"""``callshield train``: fit, compare and save the learned scorer from labelled CDRs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

_CSV = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("train")
@click.argument("cdr", type=_CSV)
@click.argument("labels", type=_CSV)
@click.option(
    "--with",
    "extra",
    type=(_CSV, _CSV),
    multiple=True,
    metavar="CDR LABELS",
    help="Another labelled CDR to train on (repeatable): other seeds and mixes generalize better.",
)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("callshield-model.json"))
@click.option("--kind", type=click.Choice(["linear", "trees", "both"]), default="both", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the campaign split and the estimators.")
@click.option(
    "--max-legit-flagged",
    default=0.0025,
    show_default=True,
    help="Share of held-out legitimate calls the screen threshold may flag (screen or block).",
)
@click.option(
    "--max-legit-blocked",
    default=0.0002,
    show_default=True,
    help="Share of held-out legitimate calls the block threshold may block.",
)
@click.option(
    "--rounds",
    default=2,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Round 1 replays in shadow mode; each further round replays with the last model deciding.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def train_command(
    state: Any,
    cdr: Path,
    labels: Path,
    extra: tuple[tuple[Path, Path], ...],
    out: Path,
    kind: str,
    seed: int,
    max_legit_flagged: float,
    max_legit_blocked: float,
    rounds: int,
    as_json: bool,
) -> None:
    """Train the learned scorer on labelled CDRs (`callshield simulate` writes them).

    Every CDR is replayed through the engine with the rules scorer to compute the live features;
    a logistic regression and gradient-boosted trees are fitted, calibrated and thresholded on
    held-out campaigns, and the better one is saved. Use it with [model] scorer = "model".
    """
    from callshield.model.train import Budgets, save, train_rounds

    sets = [(cdr, labels), *extra]
    kinds = ("linear", "trees") if kind == "both" else (kind,)
    budgets = Budgets(flagged=max_legit_flagged, blocked=max_legit_blocked)
    best, candidates, data = train_rounds(
        sets,
        config=state.config,
        budgets=budgets,
        seed=seed,
        kinds=kinds,
        rounds=rounds,
        progress=lambda line: click.echo(line, err=True),
    )
    save(best, out)
    report = {
        "calls": data.size,
        "abusive": int(data.abusive.sum()),
        "candidates": {c.name: {k: _nan_free(v) for k, v in c.metrics.items()} for c in candidates},
        "chosen": best.name,
        "saved": str(out),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"trained on {data.size} calls ({report['abusive']} abusive) from {len(sets)} CDR(s), {rounds} round(s)")
    click.echo("held-out campaigns:   roc_auc  avg_prec  abusive flagged (after 10)  legit flagged  legit blocked")
    for c in candidates:
        m = c.metrics
        click.echo(
            f"  {c.name:<8}           {m['roc_auc']:.4f}   {m['average_precision']:.4f}   "
            f"{m['abusive_flagged']:7.2%} ({m['abusive_flagged_after_10']:7.2%})      "
            f"{m['legit_flagged']:7.3%}       {m['legit_blocked']:7.3%}"
        )
    click.echo(f"chosen {best.name}; saved {out}")


def _nan_free(value: float) -> float | None:
    return None if math.isnan(value) else value
