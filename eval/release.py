"""A model the way the shipped one is made, in one call (`moderation release CONFIG`):

1. `moderation bench cross-source` for the config's recipe: each training source held out in turn, the
   recipe trained on the others, the held-out source scored (`runs/cross_source/<label>`);
2. `moderation train`: the run itself (for configs/default.yaml with `--overwrite`, the shipped model);
3. `moderation bench evasion` on the run: PR-AUC lost to rewritten words, kept in the run for its card;
4. `moderation evaluate --thresholds-from runs/cross_source/<label> [--compare-to ...]`: block thresholds
   chosen on the held-out sources' predictions, review thresholds on validation, and the model card rewritten
   with the cross-source table, the expected benign review and block rates, the evasion table and, with
   `compare_to`, the per-class comparison with the recipe it replaces.

The benchmarks write their sections into BENCHMARKS.md unless `write_benchmarks` is off. The cross-source
step comes first: its folds embed every text once (the embedding cache is shared), so the training after it
runs warm; with a warm cache the whole release takes about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def release(config_path: str | Path, overrides: Sequence[str] = (), label: str | None = None,
            overwrite: bool = False, progress: bool = True, write_benchmarks: bool = True,
            cross_source_out: str | Path | None = None, evasion_rows: int = 2000,
            compare_to: str | Path | None = None) -> Path:
    """Steps 1-4 above; returns the run directory. Refuses an existing run directory without `overwrite`
    before any work is done (training would refuse it only after the cross-source folds). `compare_to`: another
    recipe's cross-source folder (e.g. runs/cross_source/<the recipe this one replaces>) for the card's
    before/after table."""
    from eval.benchmarks import cross_source, evasion
    from eval.evaluate import attach_cross_source, read_reference, train_and_evaluate
    from moderation import runfiles
    from moderation.config import load_config

    config = load_config(config_path, list(overrides))
    runfiles.check_writable(Path(config.run.output_dir), overwrite)
    if compare_to is not None:
        read_reference(compare_to)  # a wrong path fails now, not after the folds and the training
    label = label or config.run.name
    flags = [] if write_benchmarks else ["--no-write"]
    sets = [arg for o in overrides for arg in ("--set", o)]
    out = Path(cross_source_out) if cross_source_out else cross_source.DEFAULT_OUT

    log.info("release 1/4: cross-source benchmark of %s (label %r)", config_path, label)
    cross_source.run(cross_source.build_parser().parse_args(
        ["--config", str(config_path), "--label", label, "--out", str(out), *sets, *flags]
        + (["--progress"] if progress else [])))
    log.info("release 2/4: training %s", config.run.output_dir)
    run_dir = train_and_evaluate(config, overwrite=overwrite, progress=progress)
    log.info("release 3/4: evasion benchmark of %s", run_dir)
    evasion.run(evasion.build_parser().parse_args(["--run", str(run_dir), "--max-rows", str(evasion_rows), *flags]))
    log.info("release 4/4: thresholds from the held-out sources, model card")
    attach_cross_source(run_dir, out / label, progress=progress, compare_to=compare_to)
    return run_dir
