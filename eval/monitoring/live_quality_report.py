"""The markdown report of `moderation live-quality`: what `eval.monitoring.live_quality` measured, for people."""

from __future__ import annotations

from collections.abc import Mapping

from eval.audit_report import NA, pct


def _count_line(p: Mapping) -> str:
    if not p["items"]:
        return "none flagged"
    return f"{pct(p['precision'])} ({p['confirmed']} of {p['judged']} judged; {p['items']} flagged)"


def _recall_cell(r: Mapping) -> str:
    if r["estimate"] is None:
        return f"{NA} (judged: {r['flagged_judged']} flagged, {r['random_judged']} random-sample)"
    return (f"{pct(r['estimate'])} (caught ≈ {r['estimated_caught']:.0f}, missed ≈ {r['estimated_missed']:.0f}; "
            f"{r['random_positive']} harmful of {r['random_judged']} judged random-sample posts)")


def _kappa(a: Mapping) -> str:
    if not a["pairs"]:
        return NA
    kappa = NA if a["kappa"] is None else f"{a['kappa']:.2f}"
    return f"{pct(a['percent_agreement'])} agree, kappa {kappa} ({a['pairs']} items)"


def _sampling_line(s: Mapping) -> str:
    rates = lambda values: "/".join(f"{v:g}" for v in values) or "none"
    parts = []
    if s["items_with_rates"]:
        parts.append(f"read from {s['items_with_rates']} items (random_review_rate {rates(s['random_review_rates'])}, "
                     f"block_review_rate {rates(s['block_review_rates'])})")
    if s["items_assumed"]:
        a = s["assumed"]
        parts.append(f"{s['items_assumed']} older items stored none: assumed random_review_rate "
                     f"{a['random_review_rate']:g}, block_review_rate {a['block_review_rate']:g}")
    return "; ".join(parts) or "no items"


def render_live_quality(result: Mapping) -> str:
    """The markdown report of `live_quality` output."""
    items = result["items"]
    lines = ["# Live quality from review outcomes", "",
             f"- Items: {items['total']} in the queue, {items['decided']} decided, {items['decided_twice']} decided "
             f"twice; by reason: {', '.join(f'{k} {v}' for k, v in sorted(items['by_reason'].items())) or 'none'}.",
             f"- Sampling rates: {_sampling_line(result['sampling'])}.",
             f"- Model version: {result['model_version'] or 'all versions with known thresholds'}"
             + (f"; skipped {items['skipped_by_version']}" if items["skipped_by_version"] else "") + ".",
             "", "## How often reviewers confirm the model", "",
             "Of the posts the model flagged for a class and a reviewer judged, the share the reviewer agreed was "
             "harmful in that class. Brackets: 95% Wilson intervals.", "",
             "| category | review precision | block precision | any flag | estimated recall | reviewer agreement |",
             "|---|---|---|---|---|---|"]
    for c, row in result["classes"].items():
        p = row["precision"]
        lines.append(f"| {c} | {_count_line(p['review'])} | {_count_line(p['block'])} | {_count_line(p['flagged'])} | "
                     f"{_recall_cell(row['recall'])} | {_kappa(row['agreement'])} |")
    lines += ["", f"Agreement on the action (allow / block): {_kappa(result['action_agreement'])}.", "",
              "## How recall is estimated", "",
              "caught = flagged posts × share harmful among judged flagged posts"
              + (" + posts blocked outright" if result["blocked_given"] else "")
              + "; missed = random-sample posts × share harmful among judged ones ÷ sample rate; "
              "recall = caught ÷ (caught + missed). It assumes each item's sample rate was the one in force, that "
              "judged posts are like undecided ones, and that an allow decision means no harm of any kind."]
    if not result["blocked_given"]:
        lines.append("Posts blocked outright never reach the queue and were not given, so they are not counted as "
                     "caught: recall is understated wherever the model blocks posts.")
    return "\n".join(lines) + "\n"
