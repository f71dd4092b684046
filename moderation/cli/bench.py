"""`moderation bench NAME`: benchmarks; each writes its figures, command and machine into BENCHMARKS.md."""

from __future__ import annotations

import importlib

from .common import quiet_libraries

BENCHES = {  # name -> (module in eval.benchmarks, one-line help)
    "compute": ("compute_floor", "matmul floor (fp32, bf16) and the encoders' achieved share of it"),
    "serving": ("serving", "Ray Serve under load vs in-process batched and unbatched calls"),
    "variants": ("inference_variants", "cheaper text-encoder inference: speed and PR-AUC change"),
    "quality": ("quality", "default model vs TF-IDF baseline vs alt-profanity-check, per class"),
    "evasion": ("evasion", "PR-AUC lost to rewritten words (leet, look-alikes, masked, ...); with the normaliser"),
    "cross-source": ("cross_source", "leave one source out: PR-AUC and benign review/block rates on unseen sources"),
    "self-harm": ("self_harm", "the self_harm score on the self-harm sets (evaluation only): PR-AUC, flag rates"),
    "harmless": ("harmless", "harmless posts with harm words (hand-written and generated): false flags by kind, class"),
    "pictures": ("pictures", "caption vs picture (OCR through the text head) vs both, on the meme sets"),
    "finetune-speed": ("finetune_speed", "fine-tuning texts/s: random fp32 batches vs length-bucketed vs bf16"),
    "production": ("production", "shipped model at production settings: image-post latency, 300-client overload"),
}


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("bench", parents=parents,
                       help="benchmarks; each writes its figures, command and machine into BENCHMARKS.md")
    benches = p.add_subparsers(dest="bench", required=True)
    words = [w for w in argv if not w.startswith("-")]
    for name, (module, help_text) in BENCHES.items():
        bp = benches.add_parser(name, parents=parents, help=help_text)
        if words[:2] == ["bench", name]:  # its options need its module (and sklearn): load it only then
            importlib.import_module(f"eval.benchmarks.{module}").build_parser(bp)
        bp.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    module = importlib.import_module(f"eval.benchmarks.{BENCHES[args.bench][0]}")
    if args.bench == "serving" and not args.app:
        from serve.app import build_app

        body = module.run(args, build_app=build_app)  # the app `moderation serve` runs
    else:
        body = module.run(args)
    print(body)
    return 0
