"""Evaluation throughput: the pipeline against lm-evaluation-harness on the same work.

Same model folder, same ARC-Challenge rows, same rendered prompts (the model's chat
template), greedy decoding to the same end-of-turn token and token budget, fp32 on the same
device and thread count. Two settings:

* batched: the pipeline's quality pass at batch size B (no latency timing) against lm-eval
  at batch size B;
* batch size 1: the pipeline timing every sample (latency, TTFT, TPOT recorded: at batch
  size 1 the quality pass is the timed pass) against lm-eval at batch size 1.

Each side is timed over its generation work only (model loading excluded on both sides):
for the pipeline, rendering and tokenising the prompts plus its generation loop (which
includes writing the per-sample partial file); for lm-eval, its ``generate_until`` (which
includes its tokenisation). Repeats alternate which side runs first; the script prints the
median samples/s of each side and the median of the per-repeat ratios, and checks on every
repeat that both sides generated the same text and the same accuracy.

    python bench/eval_throughput.py --rows 60 --repeats 5
    python bench/eval_throughput.py --model random --max-new-tokens 32   # long outputs

Needs ../shared/data (the ARC release and the Qwen3 tokenizer) and lm-eval.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_harness():
    spec = importlib.util.spec_from_file_location("ftmatrix_lm_eval_harness", ROOT / "bench" / "lm_eval" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rows", type=int, default=60, help="ARC-Challenge test rows evaluated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", choices=["trained", "random"], default="trained",
                        help="trained: a tiny Qwen3 briefly trained to answer with a label (short outputs); "
                             "random: untrained, so every output runs to the token limit")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--settings", default="batched,bs1", help="comma-separated: batched, bs1")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    h = load_harness()
    work = Path(tempfile.mkdtemp(prefix="ftmatrix-throughput-"))
    tokenizer_dir = args.shared_data / "qwen3-tokenizer"
    steps = 30 if args.model == "trained" else 0
    train_rows = h.arc_examples(args.shared_data, "Train") if steps else h.arc_examples(args.shared_data, "Train", 8)
    model_dir = h.train_tiny_arc_model(work / "model", tokenizer_dir, train_rows, hidden_size=args.hidden_size,
                                       steps=steps)
    examples = h.arc_examples(args.shared_data, "Test", args.rows)
    task_dir = h.write_task(work / "lm_eval_task", model_dir, examples, args.max_new_tokens)

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    report = {"rows": args.rows, "repeats": args.repeats, "max_new_tokens": args.max_new_tokens,
              "threads": args.threads, "model": args.model, "hidden_size": args.hidden_size,
              "torch": torch.__version__, "settings": {}}
    for setting in settings:
        batch = args.batch_size if setting == "batched" else 1
        latency = 0 if setting == "batched" else None
        runner = h.LmEvalRunner(model_dir, batch)
        pipe_rates, lm_rates, ratios = [], [], []
        for repeat in range(args.repeats):
            def pipeline():
                out = h.run_pipeline(work / f"pipe-{setting}", model_dir, examples, max_new_tokens=args.max_new_tokens,
                                     batch_size=batch, latency_samples=latency, warmup=0, threads=args.threads)
                tokenize_s = out["metrics"]["generation"]["tokenize_s"]
                out["rate"] = out["n"] / (out["generate_s"] + tokenize_s)
                return out

            def harness():
                out = runner.run(task_dir)
                out["rate"] = out["samples_per_s"]
                return out

            first, second = (pipeline, harness) if repeat % 2 == 0 else (harness, pipeline)
            a, b = first(), second()
            pipe, lm = (a, b) if first is pipeline else (b, a)
            same_text = pipe["generated"] == lm["generated"]
            same_acc = abs(pipe["acc"] - lm["acc"]) < 1e-9
            pipe_rates.append(pipe["rate"])
            lm_rates.append(lm["rate"])
            ratios.append(pipe["rate"] / lm["rate"])
            print(f"[{setting} bs={batch}] repeat {repeat + 1}/{args.repeats}: pipeline {pipe['rate']:.2f} "
                  f"samples/s, lm-eval {lm['rate']:.2f} samples/s, ratio {ratios[-1]:.3f}; accuracy "
                  f"{pipe['acc']:.2f} vs {lm['acc']:.2f}; same text: {same_text}; timed samples: {pipe['n_timed']}",
                  flush=True)
            if not (same_text and same_acc):
                raise SystemExit(f"the pipeline and lm-eval disagree in setting {setting}, repeat {repeat + 1}")
        report["settings"][setting] = {
            "batch_size": batch, "pipeline_times_latency": latency is None,
            "pipeline_samples_per_s_median": statistics.median(pipe_rates),
            "lm_eval_samples_per_s_median": statistics.median(lm_rates),
            "ratio_of_medians": statistics.median(pipe_rates) / statistics.median(lm_rates),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "accuracy": pipe["acc"], "hit_limit": pipe["hit_limit"], "n": pipe["n"],
        }
        del runner

    print()
    print(f"{'setting':<10} {'batch':>5} {'pipeline/s':>11} {'lm-eval/s':>10} {'ratio':>7}  (medians of "
          f"{args.repeats}; {args.rows} ARC rows, {args.model} tiny Qwen3, max_new_tokens {args.max_new_tokens}, "
          f"{args.threads} threads)")
    for setting, r in report["settings"].items():
        print(f"{setting:<10} {r['batch_size']:>5} {r['pipeline_samples_per_s_median']:>11.2f} "
              f"{r['lm_eval_samples_per_s_median']:>10.2f} {r['ratio_median']:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
