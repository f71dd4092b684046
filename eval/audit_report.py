"""audit.md: the model audit in words and tables for a trust-and-safety lead.

Owns the wording and layout of the audit report; the numbers come from `eval.audit_findings` and
`eval.identity`. Sections answer plain questions (what the thresholds catch, what they miss, where scores
are miscalibrated, which sources and groups fare worse, how benign posts naming identity groups are
treated), each number with its 95% interval in brackets. Pictures are linked relative to the report.
The report never quotes a post.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .audit_findings import CALIBRATION_TOLERANCE, MIN_SLICE_BENIGN, MIN_SLICE_POSITIVES
from .audit_plots import MIN_PLOT_SUPPORT
from .identity import IDENTITY_TERMS

log = logging.getLogger(__name__)

NA = "n/a"
TOP_FINDINGS = 8
_READING = {"overstates": "scores read higher than the share of harmful posts",
            "understates": "scores read lower than the share of harmful posts",
            "about right": "scores match the share of harmful posts on average"}


def pct(interval: Mapping | None, digits: int = 1) -> str:
    """"80.0% [78.1–81.9]" from {"value", "low", "high"}; "n/a" when undefined."""
    if not interval:
        return NA
    text = f"{100 * interval['value']:.{digits}f}%"
    if interval.get("low") is None:
        return text
    return f"{text} [{100 * interval['low']:.{digits}f}–{100 * interval['high']:.{digits}f}]"


def times(interval: Mapping | None) -> str:
    if not interval:
        return NA
    low, high = interval.get("low"), interval.get("high")
    bounds = "" if low is None else f" [{low:.2f}–{high:.2f}]"
    return f"{interval['value']:.2f}×{bounds}"


def _num(value, digits: int = 3) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def _acts(at: Mapping, name: str, verb: str) -> str:
    """How one threshold does: what share of harmful posts it reaches, and how much of what it reaches is harmful."""
    if at["tp"] + at["fp"] == 0:
        return f"the {name} {verb} no post here"
    return (f"the {name} {verb} {pct(at['recall'])} of harmful posts, and {pct(at['precision'])} of what it {verb} "
            "is harmful")


def _class_summary(cat: str, row: Mapping, threshold: Mapping, calibration: Mapping | None) -> str:
    block, review = row["block"], row["review"]
    block_name = f"block threshold ({threshold['block']:.3f})"
    review_name = f"review threshold ({threshold['review']:.3f}; review or block)"
    text = (f"- **{cat}** ({row['positives']} harmful of {row['support']} labelled): "
            f"{_acts(block, block_name, 'blocks')}; {_acts(review, review_name, 'acts on')}. "
            f"It misses {review['fn']} harmful posts and flags {pct(review['false_positive_rate'])} of benign ones.")
    if calibration:
        text += (f" Calibration: ECE {calibration['ece']:.3f}; {_READING[calibration['direction']]} "
                 f"(mean score {calibration['mean_score']:.3f}, share harmful {calibration['observed_rate']:.3f}).")
    return text


def _identity_line(cat: str, entry: Mapping) -> str | None:
    review = entry["review"]
    if not review["mention"]["benign"] or review["ratio"] is None:
        return None
    return (f"- **{cat}**: benign posts that mention an identity group are flagged at the review threshold "
            f"{times(review['ratio'])} as often as benign posts that mention none "
            f"({pct(review['mention']['false_positive_rate'])} of {review['mention']['benign']} vs "
            f"{pct(review['other']['false_positive_rate'])} of {review['other']['benign']}).")


def _finding_line(f: Mapping) -> str:
    kind = "source" if f["slice_kind"] == "source" else "targeted group"
    rate = "recall" if f["rate"] == "recall" else "false-positive rate"
    reference = "overall" if f["slice_kind"] == "source" else "over all posts naming a target"
    return (f"- {kind} `{f['slice']}`, **{f['category']}**: {f['what']} ({rate} at {f['threshold']} "
            f"{pct(f['slice_value'])} vs {100 * f['reference_value']:.1f}% {reference}; "
            f"{f['positives']} harmful of {f['support']}).")


def _summary(categories, thresholds, results) -> list[str]:
    lines = ["## In short", ""]
    for cat in categories:
        row = results["overall"].get(cat)
        if row is None:
            lines.append(f"- **{cat}**: no labels in this data, so it is not audited here.")
            continue
        lines.append(_class_summary(cat, row, thresholds[cat], results["calibration"].get(cat)))
    identity = [_identity_line(c, results["identity"]["classes"][c]) for c in categories
                if c in results["identity"]["classes"]]
    if any(identity):
        lines += ["", "Benign posts that mention identity groups:", ""] + [line for line in identity if line]
    worse = results["worse_slices"]
    lines += ["", f"Slices measurably worse than the whole ({len(worse)} found"
                  f"{f'; the {TOP_FINDINGS} largest gaps' if len(worse) > TOP_FINDINGS else ''}):", ""]
    lines += [_finding_line(f) for f in worse[:TOP_FINDINGS]] or ["- none."]
    return lines + [""]


def _at(row: Mapping, kind: str) -> str:
    at = row[kind]
    return f"{pct(at['precision'])} | {pct(at['recall'])} | {pct(at['f1'])}"


def _catch_and_miss(categories, thresholds, results, links) -> list[str]:
    lines = ["## What the thresholds catch and what they miss", "",
             "Precision: of the posts a threshold acts on, the share that is harmful. Recall: of the harmful posts, "
             "the share it acts on. At the review threshold, \"acts on\" means sent to review or blocked.", "",
             "| category | harmful / labelled | PR-AUC (average precision) | block threshold | block precision | "
             "block recall | block F1 | review threshold | review precision | review recall | review F1 | "
             "harmful missed at review | benign flagged at review |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cat in categories:
        row = results["overall"].get(cat)
        if row is None:
            lines.append(f"| {cat} | no labels |" + " |" * 11)
            continue
        t = thresholds[cat]
        never = " (never blocks)" if t.get("may_block") is False else ""
        lines.append(f"| {cat} | {row['positives']} / {row['support']} | {_num(row['average_precision'])} | "
                     f"{t['block']:.3f}{never} | {_at(row, 'block')} | {t['review']:.3f} | {_at(row, 'review')} | "
                     f"{row['review']['fn']} | {row['review']['fp']} ({pct(row['review']['false_positive_rate'])}) |")
    never = {c: t.get("no_block_reason") for c, t in thresholds.items() if c in categories and t.get("may_block") is False}
    if never:
        lines += ["", "Classes that never block (a score at or above their block threshold sends to review):", "",
                  *[f"- **{c}**: {why}" for c, why in never.items()]]
    lines += ["", "PR curves (the crosses mark where the deployed thresholds operate):", ""]
    return lines + [f"![{Path(p).stem}]({p})" for p in links["pr"]] + [""]


def _calibration(categories, results, links) -> list[str]:
    lines = ["## Where the scores are miscalibrated", "",
             "A calibrated score of 0.7 means about 70% of posts with that score are harmful. ECE (expected "
             "calibration error) is the average gap between score and observed share, weighted by posts; "
             f"\"about right\" means the average gap is under {CALIBRATION_TOLERANCE:.2f}.", "",
             "| category | ECE | Brier | mean score | share harmful | reading | worst score range (mean score → share "
             "harmful, posts) |", "|---|---|---|---|---|---|---|"]
    for cat in categories:
        cal = results["calibration"].get(cat)
        if cal is None:
            continue
        w = cal["worst_bin"]
        lines.append(f"| {cat} | {cal['ece']:.3f} | {cal['brier']:.3f} | {cal['mean_score']:.3f} | "
                     f"{cal['observed_rate']:.3f} | {cal['direction']} | {w['low']:.1f}–{w['high']:.1f} "
                     f"({w['mean_score']:.3f} → {w['observed_rate']:.3f}, {w['count']}) |")
    return lines + [""] + [f"![{Path(p).stem}]({p})" for p in links["reliability"]] + [""]


def _slice_table(title: str, intro: str, slices: Mapping, categories, pictures) -> list[str]:
    lines = [title, "", intro, "",
             "| slice | category | harmful / labelled | PR-AUC | recall at review | benign flagged at review | "
             "benign blocked |", "|---|---|---|---|---|---|---|"]
    for name in sorted(slices):
        for cat in categories:
            row = slices[name].get(cat)
            if row is None:
                continue
            lines.append(f"| {name} | {cat} | {row['positives']} / {row['support']} | "
                         f"{_num(row['average_precision'])} | {pct(row['review']['recall'])} | "
                         f"{pct(row['review']['false_positive_rate'])} | {pct(row['block']['false_positive_rate'])} |")
    return lines + [""] + [f"![{Path(p).stem}]({p})" for p in pictures] + [""]


def _slices(categories, results, links) -> list[str]:
    rule = (f"A slice is called out above when it has at least {MIN_SLICE_POSITIVES} harmful posts (for recall) or "
            f"{MIN_SLICE_BENIGN} benign posts (for false-positive rates) and its whole 95% interval lies on the "
            f"worse side of the reference. Pictures show slices with at least {MIN_PLOT_SUPPORT} labelled posts; "
            "the tables show all.")
    lines = _slice_table("## Which source datasets fare worse", "Compared with all posts. " + rule,
                         results["by_source"], categories, [p for p in links["slices"] if "slices_source_" in p])
    if not results["by_target"]:
        return lines + ["## Which targeted groups fare worse", "",
                        "This data names no targeted group (rows carry no `target`), so there is no group slice.", ""]
    return lines + _slice_table("## Which targeted groups fare worse",
                                "Compared with all posts that name a targeted group (mostly the same datasets). "
                                "A post naming several groups counts in each. " + rule,
                                results["by_target"], categories, [p for p in links["slices"] if "slices_target_" in p])


def _identity(categories, identity, links) -> list[str]:
    lines = ["## Benign posts that mention identity groups", "",
             "Among posts labelled benign for a class: the share flagged when they mention an identity group "
             "versus when they mention none, and the ratio (above 1: mentioning a group alone raises the chance "
             "of being flagged).", "",
             "| category | threshold | benign, mention | flagged | benign, no mention | flagged | ratio |",
             "|---|---|---|---|---|---|---|"]
    by_group = []
    for cat in (c for c in categories if c in identity["classes"]):
        for kind in ("block", "review"):
            e = identity["classes"][cat][kind]
            lines.append(f"| {cat} | {kind} | {e['mention']['benign']} | {pct(e['mention']['false_positive_rate'])} | "
                         f"{e['other']['benign']} | {pct(e['other']['false_positive_rate'])} | {times(e['ratio'])} |")
        for group, g in identity["classes"][cat]["review"]["by_group"].items():
            by_group.append(f"| {cat} | {group} | {g['mention']['benign']} | "
                            f"{pct(g['mention']['false_positive_rate'])} | {times(g['ratio'])} |")
    lines += ["", "By identity group, at the review threshold (baseline: benign posts that mention no group):", "",
              "| category | group | benign posts mentioning it | flagged | ratio |", "|---|---|---|---|---|", *by_group]
    return lines + [""] + [f"![{Path(p).stem}]({p})" for p in links["identity"]] + [""]


def _method(meta: Mapping) -> list[str]:
    terms = "; ".join(f"{g}: {', '.join(t)}" for g, t in IDENTITY_TERMS.items())
    return ["## How to read this", "",
            f"- Brackets are 95% bootstrap percentile intervals ({meta['n_bootstrap']} resamples, seed "
            f"{meta['seed']}). "
            "Where a rate is exactly 0% or 100% (every resample would repeat it) and in the calibration bins they are "
            "Wilson intervals; ratios use draws from each group's Jeffreys posterior. Wide brackets mean few posts: "
            "do not act on the point value alone.",
            "- Only known labels count: a post whose dataset does not label a class is left out of that class "
            "(never counted as benign). Datasets define harm differently, so a source slice also reflects its "
            "labelling rules, not only the model.",
            "- Identity mentions are found by whole-word matching of a small neutral lexicon, so they are crude "
            f"(\"black\" in \"a black cat\" counts). The lexicon: {terms}.",
            "- The report shows numbers and pictures only; no post is quoted.", ""]


def _relative(paths: Sequence, out_dir: Path) -> list[str]:
    return [Path(os.path.relpath(Path(p).resolve(), out_dir.resolve())).as_posix() for p in paths]


def write_audit_report(out_dir, meta: Mapping, categories: Sequence[str], thresholds: Mapping[str, Mapping],
                       results: Mapping, plots: Mapping[str, Sequence]) -> Path:
    """Write `out_dir/audit.md` from `eval.audit.audit_results` output and the plot paths; return its path."""
    out_dir = Path(out_dir)
    links = {k: _relative(v, out_dir) for k, v in plots.items()}
    lines = [f"# Model audit: {meta.get('model_version', 'model')}", "",
             f"- Data: {meta['data']}",
             *(["- Note: the thresholds were chosen on this same data, so block precision and review recall sit on "
                "their targets by construction; audit the test split or fresh data for an unbiased view of them. "
                "Calibration, slices and identity comparisons are informative either way."]
               if meta.get("thresholds_tuned_on_this_data") else []),
             "- Decisions: a score at or above the block threshold is blocked; at or above the review threshold, "
             "sent to human review; below, allowed.", ""]
    lines += _summary(categories, thresholds, results)
    lines += _catch_and_miss(categories, thresholds, results, links)
    lines += _calibration(categories, results, links)
    lines += _slices(categories, results, links)
    lines += _identity(categories, results["identity"], links)
    lines += _method(meta)
    path = out_dir / "audit.md"
    path.write_text("\n".join(lines))
    log.info("wrote %s", path)
    return path
