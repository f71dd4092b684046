"""Evaluation: the quality side of a run.

Owns per-class metrics on masked multi-label data (`metrics`), per-class block/review thresholds chosen
on validation data (`thresholds`), PR-curve pictures (`plots`), the TF-IDF baseline every model is
compared against (`baseline`) and the report written into a run directory (`report`).

Everything here works on numpy arrays: `labels` (N, C) 0/1 floats, `label_mask` (N, C) bool (True where
the label is known; unknown labels are ignored by every metric, never counted as negatives) and
`scores` (N, C) probabilities. Nothing here imports torch: training receives
`eval.metrics.mean_average_precision` as an injected callable instead of importing this package.

This package is named `eval`: import it as `from eval import metrics` or `from eval.metrics import ...`,
never as a bare `import eval`, which shadows the builtin in the importing module.
"""
