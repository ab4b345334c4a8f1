"""Real-token training throughput: TRL's default padded batches against the pipeline's configuration.

    python bench/train_throughput.py                       # SQuAD v2 and OpenMathInstruct-2, 3 repeats
    python bench/train_throughput.py --all --rows 64 --repeats 5 --json out.json

Real rows of SQuAD v2 and OpenMathInstruct-2 from ../shared/data (through the project's task
adapters), the real Qwen3 tokenizer and a tiny Qwen3 (random weights, real architecture and
vocabulary). For each task, every configuration trains one epoch over the same rows with the
same batch size and steps, so all see exactly the same tokens; only the batching differs:

- ``trl-default``: TRL's default collator: random batches, padded to the longest row;
- ``padding-free``: TRL's padding-free collator (rows flattened into one sequence);
- ``length-grouped``: padded batches drawn by transformers' length-grouped sampler;
- ``pipeline``: what ftmatrix.train does with the schema's defaults: the LM head scores only
  the positions that carry a label (``score_labelled_only``), and padding-free batches where
  its cost estimate says they save work and its check shows they give the padded loss.

The three others run TRL's LM head as shipped, which off a GPU scores every position, prompt
and padding included, against the whole 151,669-token vocabulary. By default only
``trl-default`` and ``pipeline`` run (``--all`` adds the other two): a run costs minutes.

The configurations take turns within each repeat, so load from other processes hits all of
them alike. It prints, per task, the median real (non-padding) tokens per second of each, by
wall clock and by the process's CPU time (steadier on a shared machine), and the ratio of
each to ``trl-default`` (ratio of medians, and median of the per-repeat ratios). Timing
covers ``trainer.train()`` only (not tokenisation or model loading).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("FTMATRIX_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONFIGS = ("trl-default", "padding-free", "length-grouped", "pipeline")


def task_rows(task: str, rows: int, seed: int = 0) -> list[dict]:
    """``rows`` real examples of a task in the example format, a seeded sample of the file."""
    import random

    from ftmatrix.tasks import get_task

    if task == "squad_v2":
        source, fmt = SHARED / "squad_v2" / "dev-v2.0.half.json", "squad_json"
    else:
        source, fmt = SHARED / "openmathinstruct2" / "openmathinstruct-2.sample.jsonl", "hub_jsonl"
    kind = get_task(task)
    examples = kind.to_examples(kind.read_local([str(source)], fmt), task)
    return random.Random(seed).sample(examples, rows)


def settings_for(config: str, args) -> dict:
    from ftmatrix import config as study_config

    study = study_config.validate({
        "models": [{"name": "tiny", "source": "local", "path": "unused"}],
        "tasks": [{"name": "t", "kind": "squad_v2", "source": {"type": "demo"}}],
        "train": {"epochs": 1, "per_device_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
                  "max_length": args.max_length, "save_steps": 10_000, "logging_steps": 10_000,
                  "warmup_ratio": 0.0},
    })
    train = study["train"]
    if config != "pipeline":
        train["padding_free"] = config == "padding-free"
        train["group_by_length"] = config == "length-grouped"
    return {"variant": "tiny/full/r0/t/seed0", "model": study["models"][0], "method": "full", "rank": 0,
            "seed": 0, "train": train, "lora": {k: v for k, v in study["lora"].items() if k != "ranks"},
            "enable_thinking": False}


def one_run(config: str, model_dir: Path, tokenizer, rows: list[dict], args, work: Path) -> dict:
    import torch
    from transformers.trainer_callback import ProgressCallback

    from ftmatrix.train import build_trainer, choose_batching, guard_callback, score_labelled_only, use_padding_free

    settings = settings_for(config, args)
    train = settings["train"]
    trainer = build_trainer(settings, model_dir, tokenizer, rows, work / config,
                            callbacks=[guard_callback(train["save_steps"])])
    trainer.remove_callback(ProgressCallback)
    score_labelled_only("cpu", enable=config == "pipeline")
    if config == "pipeline":
        padding_free, _ = choose_batching(trainer, train, "fp32", "cpu")  # what train_variant does
    else:
        padding_free = train["padding_free"]
        if padding_free:
            use_padding_free(trainer)
    torch.manual_seed(0)
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"config": config, "seconds": seconds, "cpu_seconds": cpu_seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
            "steps": trainer.state.global_step, "padding_free": padding_free,
            "group_by_length": train["group_by_length"]}


def bench_task(task: str, model_dir: Path, tokenizer, args) -> dict:
    rows = task_rows(task, args.rows)
    configs = CONFIGS if args.all else ("trl-default", "pipeline")
    runs = {config: [] for config in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = configs[repeat % len(configs):] + configs[:repeat % len(configs)]
            for config in order:
                result = one_run(config, model_dir, tokenizer, rows, args, Path(tmp) / str(repeat))
                runs[config].append(result)
                print(f"  {task} repeat {repeat + 1}/{args.repeats} {config:15s} {result['tokens_per_s']:8.1f} "
                      f"real tokens/s, {result['tokens_per_cpu_s']:8.1f} per CPU second ({result['tokens']} "
                      f"tokens, {result['steps']} steps, {result['seconds']:.1f} s)", flush=True)
    tokens = {c: {r["tokens"] for r in runs[c]} for c in configs}
    assert len(set().union(*tokens.values())) == 1, f"configurations saw different tokens: {tokens}"
    summary = {"task": task, "rows": args.rows, "steps": runs["trl-default"][0]["steps"],
               "real_tokens": runs["trl-default"][0]["tokens"], "configs": {}}
    base = runs["trl-default"]
    for config in configs:
        row = {"padding_free": runs[config][0]["padding_free"],
               "group_by_length": runs[config][0]["group_by_length"],
               "seconds": [round(r["seconds"], 2) for r in runs[config]],
               "cpu_seconds": [round(r["cpu_seconds"], 2) for r in runs[config]]}
        for key, label in (("tokens_per_s", ""), ("tokens_per_cpu_s", "cpu_")):
            median = statistics.median(r[key] for r in runs[config])
            row[f"median_{key}"] = round(median, 2)
            row[f"{label}ratio_of_medians"] = round(median / statistics.median(r[key] for r in base), 3)
            row[f"{label}median_of_ratios"] = round(statistics.median(r[key] / b[key]
                                                                      for r, b in zip(runs[config], base)), 3)
        summary["configs"][config] = row
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["squad_v2", "openmath"], choices=["squad_v2", "openmath"])
    parser.add_argument("--rows", type=int, default=16, help="rows per task (one epoch over them)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true",
                        help="also time padding-free and length-grouped batches on their own")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoTokenizer

    from tests.helpers import make_tiny_qwen3

    tokenizer_dir = SHARED / "qwen3-tokenizer"
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        print(f"the real data folder {SHARED} is absent; set FTMATRIX_SHARED_DATA", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
    results = {"threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
               "repeats": args.repeats, "torch": torch.__version__, "transformers": transformers.__version__,
               "tasks": []}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_qwen3(Path(tmp) / "tiny-qwen3", tokenizer_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        for task in args.tasks:
            summary = bench_task(task, model_dir, tokenizer, args)
            results["tasks"].append(summary)
            print(f"{task}: {summary['rows']} rows, {summary['steps']} steps, {summary['real_tokens']} real tokens")
            for config, row in summary["configs"].items():
                print(f"  {config:15s} {row['median_tokens_per_s']:9.1f} real tokens/s   "
                      f"x{row['ratio_of_medians']:.2f} vs trl-default (median of ratios "
                      f"x{row['median_of_ratios']:.2f});  per CPU second {row['median_tokens_per_cpu_s']:9.1f}  "
                      f"x{row['cpu_ratio_of_medians']:.2f} (median of ratios x{row['cpu_median_of_ratios']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
