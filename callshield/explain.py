"""Explanations: everything callshield knows about a number, and why it decided what it did."""

from __future__ import annotations

from typing import Any

from msgspec.structs import asdict as struct_asdict

from callshield.engine import Firewall
from callshield.features import as_dict
from callshield.model import FEATURE_DESCRIPTIONS, ModelScorer
from callshield.verdict import Call, Verdict


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    return {
        "id": verdict.id,
        "action": verdict.action.value,
        "decided": verdict.decided.value,
        "score": verdict.score,
        "reason": verdict.reason,
        "reasons": [r.code for r in verdict.reasons],
        "details": [{"code": r.code, "points": round(r.points, 1), "detail": r.detail} for r in verdict.reasons],
        "mode": verdict.mode.value,
    }


def model_explanation(scorer: ModelScorer, features: tuple[float, ...], *, top: int = 8) -> dict[str, Any]:
    """The learned model's view of one feature vector: probability and its strongest contributions."""
    bias, contributions = scorer.contributions(features)
    values = as_dict(features)
    ranked = sorted(contributions.items(), key=lambda item: -abs(item[1]))[:top]
    probability = scorer.probability(features)
    return {
        "name": scorer.name,
        "source": scorer.source,
        "probability": round(probability, 6),
        "score": scorer.score_of(probability),
        "margin": round(scorer.margin(features), 4),
        "bias": round(bias, 4),
        "contributions": [
            {
                "feature": name,
                "value": round(values[name], 4),
                "log_odds": round(value, 4),
                "description": FEATURE_DESCRIPTIONS[name],
            }
            for name, value in ranked
        ],
    }


def explain(
    firewall: Firewall, raw: str, *, callee: str = "", trunk: str = "", limit: int = 20, all_since: float | None = None
) -> dict[str, Any]:
    """A JSON-able explanation of ``raw`` as a caller (optionally to ``callee``)."""
    now = firewall.clock.now()
    call = Call(caller=raw, callee=callee, trunk=trunk)
    caller, callee_info, tenant = firewall.normalize_call(call)
    verdict = firewall.decide(call, record=False)
    out: dict[str, Any] = {
        "number": {**{k: v for k, v in struct_asdict(caller).items() if k != "key"}, "kind": caller.kind.value},
        "now": verdict_summary(verdict),
        "features": as_dict(verdict.features),
    }
    if isinstance(firewall.scorer, ModelScorer):
        out["model"] = model_explanation(firewall.scorer, verdict.features)
    rules = []
    for rule in firewall.rules.candidates(caller):
        applies = rule.applies(callee=callee_info.e164 if callee_info else None, tenant=tenant, when=now)
        rules.append(
            {
                "source": rule.source,
                "action": rule.action.value,
                "pattern": rule.pattern.text,
                "dids": list(rule.spec.dids),
                "tenants": list(rule.spec.tenants),
                "applies_now": applies,
                "note": rule.spec.note,
            }
        )
    out["rules"] = rules
    if caller.key is None:
        return out
    out["peers"] = firewall.peers.standing(firewall.peer_subject(caller), now)
    view = firewall.store.view(caller.key, now)
    out["reputation"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in struct_asdict(view).items()}
    window = firewall.patterns.window_of(caller.key)
    if window is not None:
        out["window"] = {
            "calls": len(window.times),
            "distinct_callees": len(set(window.callees)),
            "open_calls": len(window.active),
            "ended": len(window.ends),
        }
    out["evidence"] = [
        {"ts": ts, "kind": kind, "weight": weight, "source": source, "note": note}
        for ts, kind, weight, source, note in firewall.store.evidence_log(caller.key, limit)
    ]
    out["decisions"] = [
        {
            "id": d.id,
            "ts": d.ts,
            "callee": d.callee,
            "action": d.action,
            "decided": d.decided,
            "score": d.score,
            "reason": d.reason,
            "reasons": [f"{r['code']} ({r['points']:+.0f})" for r in d.reasons],
            "outcome": {
                "dialstatus": d.dialstatus,
                "billsec": d.billsec,
                "hangup_cause": d.hangup_cause,
                "screen": d.screen,
            }
            if d.ended is not None or d.screen
            else None,
        }
        for d in firewall.audit.for_caller(caller.label(), limit, plain_since=all_since)
    ]
    return out
