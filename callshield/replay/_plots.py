"""The report as a directory: PNG plots (matplotlib, Agg backend), ``summary.md`` and ``report.json``.

Plots: ``scores.png`` (score histogram, by label when labels were given, with ``screen_at`` and
``block_at`` marked); with labels also ``precision_recall.png`` (precision and recall of "score >=
threshold" against the threshold) and ``detection_delay.png`` (campaigns by detection delay, the
never-detected ones in their own bar). matplotlib is imported here only, when a report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from callshield.replay._report import AFTER_FIRST, ReplayReport, Share, format_report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_DPI = 100


def write_report_dir(report: ReplayReport, directory: Path | str) -> list[Path]:
    """Write the plots, ``summary.md`` and ``report.json`` into ``directory`` (created); return the files."""
    import matplotlib

    matplotlib.use("Agg")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = [_scores(report, target / "scores.png")]
    if report.labelled is not None:
        written.append(_precision_recall(report, target / "precision_recall.png"))
        written.append(_delays(report, target / "detection_delay.png"))
    (target / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2))
    summary = target / "summary.md"
    summary.write_text(_markdown(report, [p.name for p in written]), encoding="utf-8")
    return [*written, target / "report.json", summary]


def _figure() -> tuple[Any, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=_DPI, layout="constrained")
    return figure, figure.add_subplot()


def _thresholds(axes: Axes, report: ReplayReport) -> None:
    axes.axvline(report.screen_at, color="tab:orange", linestyle="--", label=f"screen_at {report.screen_at}")
    axes.axvline(report.block_at, color="tab:red", linestyle="--", label=f"block_at {report.block_at}")


def _scores(report: ReplayReport, path: Path) -> Path:
    figure, axes = _figure()
    scores = list(range(101))
    if report.labelled is None:
        axes.bar(scores, report.scores.counts, width=1.0, color="tab:blue", label="all calls")
    else:
        counts = report.labelled.score_counts
        axes.bar(scores, counts["legit"], width=1.0, color="tab:green", alpha=0.6, label="legitimate")
        axes.bar(scores, counts["abusive"], width=1.0, color="tab:purple", alpha=0.6, label="abusive")
    if any(report.scores.counts):
        axes.set_yscale("log")
    _thresholds(axes, report)
    axes.set_xlim(-1, 101)
    axes.set_xlabel("risk score")
    axes.set_ylabel("calls (log scale)")
    axes.set_title(f"Scores of {report.calls} replayed calls")
    axes.legend(loc="upper center")
    figure.savefig(path)
    return path


def _precision_recall(report: ReplayReport, path: Path) -> Path:
    assert report.labelled is not None
    figure, axes = _figure()
    curve = report.labelled.curve
    thresholds = [p.threshold for p in curve]
    axes.plot(thresholds, [_nan(p.precision) for p in curve], color="tab:blue", label="precision")
    axes.plot(thresholds, [_nan(p.recall) for p in curve], color="tab:green", label="recall")
    _thresholds(axes, report)
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("threshold (calls with score >= threshold flagged abusive)")
    axes.set_ylabel("share")
    axes.set_title("Precision and recall against the score threshold")
    axes.legend(loc="lower left")
    figure.savefig(path)
    return path


_DELAY_BINS = (*((n, n) for n in range(11)), (11, 20), (21, 50), (51, 100), (101, 500), (501, None))
"""Detection-delay bars: each delay up to 10 calls, then wider ranges."""


def _delays(report: ReplayReport, path: Path) -> Path:
    assert report.labelled is not None
    figure, axes = _figure()
    campaigns = report.labelled.campaigns
    delays = [c.delay for c in campaigns if c.delay is not None]
    counts = [sum(1 for d in delays if low <= d and (high is None or d <= high)) for low, high in _DELAY_BINS]
    names = [str(low) if low == high else f"{low}+" if high is None else f"{low}-{high}" for low, high in _DELAY_BINS]
    positions = list(range(len(names)))
    axes.bar(positions, counts, width=0.8, color="tab:blue", label="detected")
    never = len(campaigns) - len(delays)
    axes.bar([len(names)], [never], width=0.8, color="tab:red", label=f"never detected ({never})")
    axes.set_xticks([*positions, len(names)], [*names, "never"], rotation=45)
    axes.set_xlabel("calls of the campaign before its first block or screen")
    axes.set_ylabel("campaigns")
    axes.set_title(f"Detection delay of {len(campaigns)} abusive campaigns")
    axes.legend()
    figure.savefig(path)
    return path


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _row(title: str, share: Share) -> str:
    return (
        f"| {title} | {share.calls} | {share.blocked} ({_pct(share.blocked_share)}) | "
        f"{share.screened} ({_pct(share.screened_share)}) | {_pct(share.caught_share)} |"
    )


def _markdown(report: ReplayReport, images: list[str]) -> str:
    lines = [
        "# callshield replay report",
        "",
        f"{report.calls} calls replayed in `{report.mode}` mode (screen_at {report.screen_at}, block_at "
        f"{report.block_at}). Blocked/screened figures use the *decided* action (before shadow mode), so a "
        "shadow-mode replay shows what enforcing would do. Outcomes fed back are the CDR's: what happened "
        "without the firewall.",
        "",
    ]
    labelled = report.labelled
    if labelled is not None:
        d = labelled.detection
        lines += [
            "## Labelled traffic",
            "",
            f"{labelled.matched} labelled calls ({labelled.unlabelled_calls} calls without a label, "
            f"{labelled.labels_without_call} labels without a call).",
            "",
            "| calls | n | blocked | screened | blocked or screened |",
            "|---|---|---|---|---|",
            _row("abusive", labelled.abusive),
            _row(f"abusive, after a campaign's first {AFTER_FIRST} calls", labelled.abusive_after_first_10),
            _row("legitimate", labelled.legit),
            "",
            f"Detection delay (calls of a campaign before its first block or screen) over {d.campaigns} campaigns: "
            f"median {_delay(d.median)}, p90 {_delay(d.p90)} (never-detected campaigns counted as infinitely late); "
            f"{d.never_detected} never detected; over the detected ones median {_delay(d.median_detected)}, "
            f"p90 {_delay(d.p90_detected)}.",
            "",
            "Legitimate calls blocked or screened, by reason: "
            + (", ".join(f"`{k}` {v}" for k, v in labelled.legit_caught_reasons.items()) or "none")
            + ".",
            "",
            "Abusive calls connected, by reason: "
            + (", ".join(f"`{k}` {v}" for k, v in list(labelled.abusive_missed_reasons.items())[:15]) or "none")
            + ".",
            "",
            "### Per family",
            "",
            "| family | n | blocked | screened | blocked or screened |",
            "|---|---|---|---|---|",
        ]
        for family in labelled.families:
            lines.append(_row(f"{family.label}/{family.family}", family.share))
            if family.after_first_10 is not None and family.after_first_10.calls:
                lines.append(_row(f"{family.label}/{family.family}, after first {AFTER_FIRST}", family.after_first_10))
        lines += [
            "",
            "| abusive family | campaigns | never detected | median delay | p90 delay |",
            "|---|---|---|---|---|",
        ]
        for family in labelled.families:
            fd = family.detection
            if fd is not None and fd.campaigns:
                lines.append(
                    f"| {family.family} | {fd.campaigns} | {fd.never_detected} | {_delay(fd.median)} "
                    f"| {_delay(fd.p90)} |"
                )
        lines.append("")
    lines += ["## Plots", ""]
    lines += [f"![{name}]({name})" for name in images]
    lines += ["", "## Full report (text)", "", "```", format_report(report), "```", ""]
    return "\n".join(lines)


def _delay(value: float | None) -> str:
    return "not reached" if value is None else f"{value:g}"
