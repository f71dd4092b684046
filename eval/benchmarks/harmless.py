"""Harmless posts with harm words: how many a run sends to review or blocks, by kind and by class.

A platform notices false flags on harmless posts first ("how do I kill the background job"). Two kinds of
harmless posts are scored through the serving path (`common.served_decisions`: `Moderator.score_arrays`
and the policy at the run's thresholds), for each run given, side by side:

- the posts in `harmless_posts.json`, written by hand by the project (never trained on), in kinds: harm words
  in harmless senses, figures of speech, games and fiction, definitions, history and news, health and safety
  questions, counter-speech, neutral mentions of identity groups, questions with a nonsense premise, everyday
  chatter. Its parts say when they were written against the hard negatives' templates: a part written before
  a template shaped it, so only a part written after measures those templates honestly;
- the generated probe (`moderation.data.hard_negatives`, split "probe": other templates than training's, the
  same slot words), which the cross-source benchmark also scores; it reads lower than posts written
  independently, which is why the hand-written posts are here.

Every post is harmless, so the share flagged is the false-flag rate; the section lists which class flags
them and each flagged hand-written post with the classes that flagged it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from eval.benchmarks import common
from eval.benchmarks.cross_source import PROBE_ROWS

log = logging.getLogger(__name__)
POSTS = Path(__file__).with_name("harmless_posts.json")
PARTS = {"written_before": "hand-written, before the templates it shaped",
         "written_after": "hand-written, after the templates (held out)"}
PROBE = "generated probe"


def load_posts(path: Path = POSTS) -> dict[str, dict[str, list[str]]]:
    """{part: {kind: [text, ...]}} of the hand-written harmless posts."""
    doc = json.loads(path.read_text())
    return {part: doc[part] for part in PARTS}


def probe_texts(rows: int) -> list[str]:
    """`rows` texts of the generated harmless probe (`moderation.data.hard_negatives`, split "probe", seed 0)."""
    from moderation.data.hard_negatives import generate

    return [r["text"] for r in generate(rows, seed=0, split="probe")]


def measure_run(run: str | None, probe: list[str]) -> dict:
    """One run's false flags on every part, by kind and by class, with the flagged hand-written posts."""
    from moderation.moderator import Moderator
    from moderation.policy import Action

    moderator = Moderator(run)
    parts = {**load_posts(), PROBE: {"all kinds": probe}}
    # The flags hold at these thresholds only: the model card leaves them out once the run's thresholds change.
    out = {"version": moderator.version, "run_dir": str(moderator.run_dir),
           "thresholds": moderator.thresholds.model_dump(mode="json"), "parts": {}}
    for part, kinds in parts.items():
        texts = [t for ts in kinds.values() for t in ts]
        _, actions, by_class = common.served_decisions(moderator, texts)
        flagged = actions != Action.ALLOW.value
        kind_of = np.array([k for k, ts in kinds.items() for _ in ts])
        out["parts"][part] = {
            "support": len(texts), "flagged": float(flagged.mean()),
            "blocked": float((actions == Action.BLOCK.value).mean()),
            "by_kind": {k: {"support": int((kind_of == k).sum()), "flagged": int(flagged[kind_of == k].sum())}
                        for k in kinds},
            "by_class": {c: float(by_class[:, j].mean()) for j, c in enumerate(moderator.categories)},
            "examples": [] if part == PROBE else [
                {"text": t, "action": str(a), "classes": [c for j, c in enumerate(moderator.categories) if by_class[i, j]]}
                for i, (t, a) in enumerate(zip(texts, actions)) if flagged[i]],
        }
    return out


def measure(args) -> dict:
    probe = probe_texts(args.probe_rows)
    return {"runs": [measure_run(run, probe) for run in (args.run or [None])], "probe_rows": len(probe)}


def format_parts(runs: list[dict]) -> str:
    """Tables of runs side by side: flagged / blocked per part, the share each class flags, hand-written posts
    flagged by kind."""
    names = [f"`{r['version']}`" for r in runs]
    parts = list(runs[0]["parts"])
    summary = common.md_table(
        ["posts", "support", *[f"flagged / blocked, {n}" for n in names]],
        [[PARTS.get(p, p), runs[0]["parts"][p]["support"],
          *[f"{common.pct(r['parts'][p]['flagged'], 1)} / {common.pct(r['parts'][p]['blocked'], 1)}" for r in runs]]
         for p in parts])
    categories = list(runs[0]["parts"][parts[0]]["by_class"])
    by_class = common.md_table(
        ["posts", "model", *categories],
        [[PARTS.get(p, p), n, *[common.pct(r["parts"][p]["by_class"][c], 1) for c in categories]]
         for p in parts for n, r in zip(names, runs)])
    hand = [p for p in parts if p in PARTS]
    by_kind = common.md_table(
        ["kind", *[f"{PARTS[p]}, {n}" for p in hand for n in names]],
        [[k, *[f"{r['parts'][p]['by_kind'][k]['flagged']} of {r['parts'][p]['by_kind'][k]['support']}"
               if k in r["parts"][p]["by_kind"] else None for p in hand for r in runs]]
         for k in dict.fromkeys(k for p in hand for k in runs[0]["parts"][p]["by_kind"])])
    return "\n".join([summary, "", "Share of the posts each class flags:", "", by_class, "",
                      "Hand-written posts flagged, by kind:", "", by_kind])


def report(m: dict) -> str:
    runs = m["runs"]
    versions = ", ".join(f"`{r['version']}`" for r in runs)
    lines = [f"Harmless posts scored through the serving path at each model's deployed thresholds; flagged = sent "
             f"to review or blocked, so every flag is false. Hand-written posts: `eval/benchmarks/harmless_posts.json` "
             f"(never trained on); the generated probe: {m['probe_rows']} texts of `moderation.data.hard_negatives`' "
             f"probe templates. Runs: {versions}.", "",
             format_parts(runs), ""]
    for r in runs:
        examples = [f"{e['text']} ({', '.join(e['classes'])}{', blocked' if e['action'] == 'block' else ''})"
                    for p in PARTS for e in r["parts"][p]["examples"]]
        lines += [f"Flagged by `{r['version']}`: " + ("; ".join(examples) or "none") + ".", ""]
    return "\n".join(lines)


def keep_in_run(measured: dict) -> None:
    """Store a run's own figures with it, for its model card (`moderation evaluate --run` renders them)."""
    from moderation import runfiles

    run_dir = Path(measured["run_dir"])
    runfiles.write_json(run_dir / runfiles.HARMLESS, {k: v for k, v in measured.items() if k != "run_dir"})
    log.info("kept in %s; `moderation evaluate --run %s` puts it into the model card", runfiles.HARMLESS, run_dir)


def run(args) -> str:
    m = measure(args)
    for measured in m["runs"]:
        keep_in_run(measured)
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1))
    return common.publish("harmless", "Harmless posts with harm words: false flags by kind and class", report(m), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append",
                        help="run directory; repeat to compare runs side by side (default: the shipped model)")
    parser.add_argument("--probe-rows", type=int, default=PROBE_ROWS, help="generated probe texts (as the cross-source bench)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    common.add_common_options(parser)
    return parser
