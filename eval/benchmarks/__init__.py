"""Benchmarks: serving speed against its limits, model quality against baselines, side by side.

One module per benchmark, each with `build_parser(parser)` and `run(args) -> str` (the markdown body it
wrote), run by `moderation bench <name>` (the one entry point); each writes its own section of BENCHMARKS.md
through `eval.benchmarks.sections.update_section`, with the command, the machine and the date:

    compute_floor       the machine's matmul rate (fp32, bf16) and the encoders' achieved share of it
    serving             load generator against the Ray Serve app vs in-process batched / unbatched calls
    inference_variants  cheaper text-encoder inference (bf16, int8, ONNX Runtime, bucketing): speed and PR-AUC
    quality             default model vs TF-IDF baseline vs alt-profanity-check on every test split, per class

`loadgen` is the HTTP load generator (closed and open loop) and its statistics; `harness` the local Ray Serve
the serving benchmark runs against; `flops` the FLOP arithmetic; `common` the real data the benchmarks run
on and the markdown helpers; `sections` the BENCHMARKS.md bookkeeping (also used by `moderation ladder`).

Absolute times move on shared machines, so every target is a ratio of two figures measured in one run,
interleaved where they compete for the same cores. Unlike the rest of `eval`, these modules measure the
model itself, so they import torch (inside functions, keeping `import eval.benchmarks` light). They never
import our `serve` package: the serving benchmark receives the Serve application builder from its caller
(the CLI hands in the one `moderation serve` runs; `--app package.module:function` names another).
"""
