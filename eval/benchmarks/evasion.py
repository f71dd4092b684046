"""Evasion: how much PR-AUC a run loses when words are rewritten the way evaders write them.

The run's own test split (rebuilt from its config; text posts, at most `--max-rows`, seeded sample) is scored
through `Moderator.score_arrays` (the serving path) as written, and again after each perturbation kind of
`moderation.encoders.perturb` (every kind, or `--kinds`; every row rewritten, half its words).
`eval.evasion.evasion_table` gives per class the PR-AUC clean and perturbed and the drop (target: at most
0.01 per class). Two encoder settings side by side:

- *as trained*: the run's `text_encoder.normalize`, i.e. what the run deploys (the per-class table and the
  verdict are for this setting);
- the other setting on the same models, for contrast: the normaliser (`moderation.encoders.normalize.
  normalize_text` before tokenising) switched on for a run trained without it, or off for a run trained with
  it (what the normaliser buys), for the text encoder and the lexical view alike. The normaliser leaves
  ordinary text unchanged, so the clean column moves only where the test texts themselves hold look-alikes or
  leetspeak.

The measurement is also kept in the run directory (`evasion.json`, replaced when the run is retrained), so
the next `moderation evaluate --run RUN` puts the evasion table into the model card; only a measurement of
every kind is kept (`--kinds` is for trials).

Most rewrites mirror the normaliser (see `moderation.encoders.perturb`): with it, a zero drop on those is
expected by construction, and the table says so; masked and stretched words (kinds `masked`, `stretched`,
`wild`) are read back only when an English word fits (the harm word first, for masked ones), so their drop
is what evaders still win.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from eval.benchmarks import common

log = logging.getLogger(__name__)


def test_texts(run_dir, max_rows: int | None, seed: int) -> dict:
    """Columns (text, labels, label_mask) of the run's test split, text posts only, a seeded sample."""
    import datasets

    from moderation import runfiles
    from moderation.data.build import build_splits

    config = runfiles.read_config(run_dir)
    datasets.disable_progress_bars()
    test = build_splits(config, only_eval=True)["test"].filter(lambda r: bool(r["text"]))
    return common.sample_split(test, max_rows, seed)


def measure(args) -> dict:
    from eval.evasion import KINDS, evasion_benchmark
    from moderation.moderator import Moderator

    kinds = args.kinds or KINDS
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown} (known: {', '.join(KINDS)})")
    moderator = Moderator(args.run)
    if moderator.text_encoder is None:
        raise SystemExit(f"{moderator.run_dir}: the model reads no text, so evasion of text does not apply")
    cols = test_texts(moderator.run_dir, args.max_rows, args.seed)
    labels = np.asarray(cols["labels"], np.float32)
    mask = np.asarray(cols["label_mask"], bool)
    as_trained = bool(moderator.text_encoder.cfg.normalize)
    # The deployed setting first: the per-class table and the verdict are about it.
    settings = {"as trained" + (" (normaliser on)" if as_trained else " (no normaliser)"): as_trained,
                "normaliser off at inference" if as_trained else "normaliser at inference": not as_trained}
    out = {}
    for name, normalize in settings.items():
        # Both views read text through the normaliser (the lexical view's n-grams too), so both switch together.
        moderator.text_encoder.cfg = moderator.text_encoder.cfg.model_copy(update={"normalize": normalize})
        if moderator.lexical_model is not None:
            moderator.lexical_model.normalize = normalize
        started = time.perf_counter()

        def score(texts):
            return moderator.score_arrays(texts, batch_size=64).fused

        out[name] = evasion_benchmark(score, cols["text"], labels, mask, moderator.categories, seed=args.seed,
                                      kinds=kinds)
        log.info("%s: %d texts x %d kinds scored in %.0f s", name, len(cols["text"]), len(kinds) + 1,
                 time.perf_counter() - started)
    return {"run_dir": str(moderator.run_dir), "version": moderator.version, "rows": len(cols["text"]),
            "categories": moderator.categories, "settings": out, "deployed": next(iter(out))}


def report(m: dict, args) -> str:
    from eval.evasion import KINDS_NOTE, PER_CLASS_KINDS, SIDES_NOTE, format_evasion_table, format_settings_table

    settings = m["settings"][m["deployed"]]
    lines = [f"Model `{m['version']}`, its test split ({m['rows']} text posts, seeded sample), every post rewritten "
             "(half its words) by each kind. Drop = PR-AUC clean minus perturbed, mean over classes with labels; "
             f"target at most 0.01 per class. {KINDS_NOTE} {SIDES_NOTE}", "",
             format_settings_table(m["settings"], m["deployed"]), ""]
    for kind, what in PER_CLASS_KINDS.items():
        if kind not in settings:  # measured before the kind existed
            continue
        met = all(r["drop"] is None or r["drop"] <= 0.01 for r in settings[kind].values())
        lines += [f"Per class, {kind} ({what}), {m['deployed']} (as the run deploys it): target {common.verdict(met)}.",
                  "", format_evasion_table(settings[kind]), ""]
    return "\n".join(lines)


def keep_in_run(run_dir, m: dict) -> None:
    """Store the measurement with the run, for its model card (`moderation evaluate --run` renders it)."""
    from moderation import runfiles

    runfiles.write_json(Path(run_dir) / runfiles.EVASION, m)
    log.info("kept in %s; `moderation evaluate --run %s` puts it into the model card", runfiles.EVASION, run_dir)


def run(args) -> str:
    from eval.evasion import KINDS
    from moderation import runfiles

    m = measure(args)
    run_dir = m.pop("run_dir")
    measured = set(next(iter(m["settings"].values())))
    if measured == set(KINDS):
        keep_in_run(run_dir, m)
    else:  # a trial on a few kinds must not replace the run's whole table in its model card
        log.info("not kept in %s: only %s measured", runfiles.EVASION, ", ".join(sorted(measured)))
    return common.publish("evasion", "Evasion: PR-AUC lost to rewritten words", report(m, args), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run directory (default: the shipped model)")
    parser.add_argument("--max-rows", type=int, default=2000, help="test posts scored (seeded sample)")
    parser.add_argument("--kinds", nargs="+", help="rewrite kinds to measure (default: all)")
    common.add_common_options(parser)
    return parser
