"""The reference study's jobs at their real shapes, on this CPU: memory, step times, projected GPU cost.

    python bench/reference_shapes.py                     # everything below, about half an hour on 2 cores
    python bench/reference_shapes.py --only project      # the FLOPs projection alone (seconds)
    python bench/reference_shapes.py --only train --json out.json

Builds random-weight models with the exact architectures of Qwen3-0.6B and Qwen3-1.7B (their
published config.json values, ``ftmatrix.resources.SHAPES``; the real tokenizer from
``../shared/data/qwen3-tokenizer``; weights saved in bf16 like the hub's files), links them with
``ftmatrix.models.link_model`` and runs the pipeline's own jobs on them:

- ``ftmatrix.train.train_variant`` for full fine-tuning and LoRA r = 32, 256, 1024 (all linear
  layers) of the 0.6B shape, with the settings ``rules/common.smk``'s ``train_settings`` passes
  for the reference study (``config.yaml``), a few optimiser steps each, on rows of real
  OpenMathInstruct-2 text long enough to fill ``max_length``;
- ``ftmatrix.evaluate.evaluate_cell`` for the untuned 0.6B and 1.7B shapes on a few real
  OpenMathInstruct-2 prompts (random weights never stop, so every sample runs to the budget).

Each measurement runs in a child process of its own (``nice -n 10``, one after another), so its
peak resident memory (``ru_maxrss``) is its own. The reference setting, a micro-batch of 8 rows
of up to 1,024 tokens, does not fit a shared 24 GiB machine in fp32, so training is measured at
micro-batch 1 and lengths of 128 to 512 tokens; a second length for the same job gives the
memory per token of a micro-batch, and ``ftmatrix.resources`` scales that back to 8 × 1,024
(what ``train_mem_mb`` requests). Gradient accumulation holds no extra memory (gradients are
summed in place), so the measurements use one micro-batch per optimiser step.

The projection (``ftmatrix.resources.project_study``) prints every job of the reference study
with its floating-point operations and hours on one stated GPU at a stated utilisation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
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
TOKENIZER = SHARED / "qwen3-tokenizer"
OPENMATH = SHARED / "openmathinstruct2" / "openmathinstruct-2.sample.jsonl"

# (method, rank, max_length, micro-batch): two lengths for full fine-tuning and for LoRA r = 32
# give the memory per token; one length for the larger ranks (the adapters add their state).
TRAIN_RUNS = [
    ("lora", 32, 128, 1), ("full", 0, 128, 1), ("lora", 1024, 128, 1), ("lora", 32, 384, 1),
    ("full", 0, 256, 1), ("lora", 256, 128, 1),
]
# (model, prompts, batch size, max_new_tokens)
EVAL_RUNS = [("qwen3-0.6b", 4, 4, 32), ("qwen3-1.7b", 4, 4, 32)]
# Adam's moments exist from the first optimiser step on, so the second step reaches the peak.
STEPS = 2


# ----------------------------------------------------------------------------- setup


def reference_config() -> dict:
    """config.yaml, validated (schema defaults filled), as every rule sees it."""
    from ftmatrix import config as study_config

    return study_config.validate(study_config.read_yaml(ROOT / "config.yaml"), source="config.yaml")


def model_entry(config: dict, name: str) -> dict:
    return next(m for m in config["models"] if m["name"] == name)


def build_model_folder(name: str, hub_id: str, work: Path) -> Path:
    """A random-weight model with the published architecture of ``hub_id``, saved like the hub's (bf16)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from ftmatrix.resources import SHAPES

    folder = work / "weights" / name
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return folder
    shape = SHAPES[hub_id]
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config = Qwen3Config(**shape.hf_config(), bos_token_id=151643, eos_token_id=151645,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)   # never holds an fp32 copy of the 1.7B model
    try:
        model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    assert model.num_parameters() == shape.total_params(), (model.num_parameters(), shape.total_params())
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def link(config: dict, name: str, folder: Path, work: Path) -> Path:
    from ftmatrix.models import link_model

    out = work / "models" / name
    entry = {**model_entry(config, name), "source": "local", "path": str(folder)}
    link_model(entry, out, ROOT)
    return out / "manifest.json"


def openmath_files(work: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """Real OpenMathInstruct-2 rows: the longest ones for training (every row fills max_length up
    to 512), a few prompts for evaluation."""
    from transformers import AutoTokenizer

    from ftmatrix.io import write_jsonl
    from ftmatrix.tasks import get_task

    task = get_task("openmath")
    examples = task.to_examples(task.read_local([str(OPENMATH)], "hub_jsonl"), "openmath")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def length(e):
        text = tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False, enable_thinking=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths = sorted(((length(e), i) for i, e in enumerate(examples)), reverse=True)
    longest = [examples[i] for n, i in lengths if n >= 512][:32]
    assert len(longest) >= 8, "too few OpenMath rows of 512 tokens or more"
    files = {"train": work / "data" / "train.jsonl", "heldout": work / "data" / "heldout.jsonl",
             "eval": work / "data" / "eval.jsonl"}
    write_jsonl(files["train"], [{"prompt": e["prompt"], "completion": e["completion"]} for e in longest[:24]])
    write_jsonl(files["heldout"], [{"prompt": e["prompt"], "completion": e["completion"]} for e in longest[24:]])
    write_jsonl(files["eval"], [{"id": e["id"], "prompt": e["prompt"]} for e in examples[:16]])
    return files


def train_settings(config: dict, model: str, method: str, rank: int, overrides: dict) -> dict:
    """What rules/common.smk's train_settings passes (and workflow_scripts/train_variant.py adds
    the bookkeeping keys to), with ``overrides`` for the measurement."""
    from ftmatrix import grid
    from ftmatrix.config import TRAIN_BOOKKEEPING_KEYS

    rate = grid.learning_rates(config, method, "openmath")[0]    # the first of the sweep's rates
    run = grid.Run(grid.Variant(model, method, rank, "openmath", 0), grid.lr_text(rate))
    train = {k: v for k, v in config["train"].items() if k not in TRAIN_BOOKKEEPING_KEYS}
    train["learning_rate"] = {method: run.learning_rate}
    train.update({key: config["train"][key] for key in TRAIN_BOOKKEEPING_KEYS})
    train.update(overrides)
    settings = {"variant": run.path,
                "model": {k: v for k, v in model_entry(config, model).items() if k not in ("params_b", "finetune")},
                "method": method, "rank": rank, "seed": 0, "train": train,
                "enable_thinking": config["enable_thinking"]}
    if method == "lora":
        settings["lora"] = {k: v for k, v in config["lora"].items() if k != "ranks"}
    return json.loads(json.dumps(settings, sort_keys=True))


def evaluate_settings(config: dict, model: str, batch_size: int, max_new_tokens: int) -> dict:
    """What rules/common.smk's evaluate_settings passes for an untuned model's cell."""
    from ftmatrix.config import SCORING_KEYS

    task = next(t for t in config["tasks"] if t["name"] == "openmath")
    evaluate = {k: v for k, v in config["evaluate"].items() if k not in SCORING_KEYS}
    evaluate.update(batch_size=batch_size, latency_samples=2, warmup=1)
    return {"cell": f"{model}/base/r0/none/seed0/openmath",
            "model": {k: v for k, v in model_entry(config, model).items() if k not in ("params_b", "finetune")},
            "method": "base", "task": {"name": task["name"], "kind": task["kind"], "max_new_tokens": max_new_tokens},
            "evaluate": evaluate, "enable_thinking": config["enable_thinking"]}


# ----------------------------------------------------------------------------- child processes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def child_train(spec: dict) -> dict:
    from transformers import TrainerCallback

    from ftmatrix.train import train_variant

    marks: dict = {"steps": []}

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["before_training_peak_mb"] = peak_rss_mb()
            marks["before_training_rss_mb"] = current_rss_mb()
            marks["t"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            marks["steps"].append({"step": state.global_step, "seconds": now - marks["t"],
                                   "rss_mb": current_rss_mb(), "peak_mb": peak_rss_mb()})
            marks["t"] = now

        def on_train_end(self, args, state, control, **kwargs):
            marks["training_peak_mb"] = peak_rss_mb()

    work = Path(spec["work"])
    metrics = train_variant(spec["settings"], spec["manifest"], spec["train"], spec["heldout"],
                            output_dir=str(work / "model"), metrics_file=str(work / "train_metrics.json"),
                            checkpoint_dir=str(work / "checkpoints"), config_hash=None,
                            threads=spec["threads"], callbacks=[Marks()])
    return {"job_peak_mb": peak_rss_mb(), "metrics": metrics.to_json() if hasattr(metrics, "to_json")
            else json.loads(json.dumps(metrics, default=lambda o: o.__dict__)), **marks}


def child_evaluate(spec: dict) -> dict:
    from ftmatrix.evaluate import evaluate_cell
    from ftmatrix.io import read_jsonl

    work = Path(spec["work"])
    started = time.perf_counter()
    summary = evaluate_cell(spec["settings"], spec["manifest"], None, spec["eval"], work / "generations.jsonl",
                            work / "generation.json", config_hash=None, threads=spec["threads"], progress=False)
    rows = read_jsonl(work / "generations.jsonl")
    timed = [r for r in rows if r["latency_s"] is not None]
    return {"job_peak_mb": peak_rss_mb(), "job_s": time.perf_counter() - started,
            "load_s": summary.load_s, "quality_pass_s": summary.quality_pass_s, "timed_pass_s": summary.timed_pass_s,
            "n": summary.n, "output_tokens": [r["output_tokens"] for r in rows],
            "input_tokens": [r["input_tokens"] for r in rows],
            "tpot_s": [r["tpot_s"] for r in timed], "ttft_s": [r["ttft_s"] for r in timed],
            "precision": summary.precision}


def run_child(kind: str, spec: dict, out: Path) -> dict:
    """One measurement in a process of its own, at low priority; its result as a dict."""
    spec_file = out.with_suffix(".spec.json")
    cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__).resolve()), "--child", kind, str(spec_file),
           str(out)]
    if out.is_file() and json.loads(spec_file.read_text()) == spec:   # measured before (--work kept)
        return json.loads(out.read_text())
    spec_file.write_text(json.dumps(spec))
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    log = out.with_suffix(".log")
    with open(log, "w") as sink:
        done = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed ({done.returncode}); see {log}:\n"
                           f"{log.read_text()[-4000:]}")
    result = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - started
    out.write_text(json.dumps(result))
    return result


# ----------------------------------------------------------------------------- measurements


def measure_training(config: dict, work: Path, args) -> list[dict]:
    folder = build_model_folder("qwen3-0.6b", "Qwen/Qwen3-0.6B", work)
    manifest = link(config, "qwen3-0.6b", folder, work)
    files = openmath_files(work, folder)
    results = []
    for method, rank, max_length, micro in TRAIN_RUNS:
        if args.runs and f"{method}{rank}@{max_length}" not in args.runs:
            continue
        overrides = {"max_length": max_length, "per_device_batch_size": micro, "gradient_accumulation_steps": 1,
                     "max_steps": STEPS, "heldout_size": 2, "logging_steps": 1, "save_steps": 1000}
        settings = train_settings(config, "qwen3-0.6b", method, rank, overrides)
        job = work / "jobs" / f"{method}-r{rank}-L{max_length}-b{micro}"
        job.mkdir(parents=True, exist_ok=True)
        spec = {"settings": settings, "manifest": str(manifest), "train": str(files["train"]),
                "heldout": str(files["heldout"]), "work": str(job), "threads": args.threads}
        result = run_child("train", spec, job / "result.json")
        m = result["metrics"]
        row = {"method": method, "rank": rank, "max_length": max_length, "micro_batch": micro,
               "job_peak_mb": round(result["job_peak_mb"]), "loaded_peak_mb": round(result["before_training_peak_mb"]),
               "training_peak_mb": round(result["training_peak_mb"]),
               "step_s": [round(s["seconds"], 1) for s in result["steps"]],
               "tokens_per_step": m["train_tokens"] / max(1, m["steps"]),
               "trainable_params": m["trainable_params"], "total_params": m["total_params"],
               "padding_free": m["padding_free"], "precision": m["precision"], "threads": m["threads"],
               "process_s": round(result.get("process_s", 0), 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
        for leftover in ("model", "checkpoints"):
            subprocess.run(["rm", "-rf", str(job / leftover)], check=False)
    return results


def measure_evaluation(config: dict, work: Path, args) -> list[dict]:
    results = []
    ids = {"qwen3-0.6b": "Qwen/Qwen3-0.6B", "qwen3-1.7b": "Qwen/Qwen3-1.7B"}
    for name, prompts, batch, new_tokens in EVAL_RUNS:
        folder = build_model_folder(name, ids[name], work)
        manifest = link(config, name, folder, work)
        files = openmath_files(work, folder)
        from ftmatrix.io import read_jsonl, write_jsonl

        eval_file = work / "data" / f"eval-{prompts}.jsonl"
        write_jsonl(eval_file, read_jsonl(files["eval"])[:prompts])
        job = work / "jobs" / f"eval-{name}-b{batch}-n{new_tokens}"
        job.mkdir(parents=True, exist_ok=True)
        spec = {"settings": evaluate_settings(config, name, batch, new_tokens), "manifest": str(manifest),
                "eval": str(eval_file), "work": str(job), "threads": args.threads}
        result = run_child("evaluate", spec, job / "result.json")
        tpot = sorted(t for t in result["tpot_s"] if t)
        row = {"model": name, "prompts": prompts, "batch_size": batch, "max_new_tokens": new_tokens,
               "job_peak_mb": round(result["job_peak_mb"]), "load_s": round(result["load_s"], 1),
               "quality_pass_s": round(result["quality_pass_s"], 1), "timed_pass_s": round(result["timed_pass_s"], 1),
               "mean_input_tokens": sum(result["input_tokens"]) / len(result["input_tokens"]),
               "output_tokens": sorted(set(result["output_tokens"])),
               "tpot_median_s": round(tpot[len(tpot) // 2], 3) if tpot else None,
               "precision": result["precision"], "process_s": round(result.get("process_s", 0), 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def lora_counts(work: Path) -> list[dict]:
    """Trainable parameters per rank of the 0.6B shape: PEFT's count on a meta-device model, the
    closed form, and the pipeline's own count (ftmatrix.train.parameter_counts)."""
    import torch
    from peft import get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ftmatrix.resources import SHAPES
    from ftmatrix.train import lora_config, parameter_counts

    config = reference_config()
    lora = {k: v for k, v in config["lora"].items() if k != "ranks"}
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    rows = []
    for rank in config["lora"]["ranks"]:
        with torch.device("meta"):
            model = Qwen3ForCausalLM(Qwen3Config(**shape.hf_config()))
        peft_model = get_peft_model(model, lora_config(rank, lora))
        trainable, total = peft_model.get_nb_trainable_parameters()
        ours, _ = parameter_counts(peft_model)
        rows.append({"rank": rank, "peft": trainable, "pipeline": ours, "formula": shape.lora_params(rank),
                     "percent_of_base": round(100 * trainable / shape.total_params(), 2)})
    return rows


def compare_with_model(rows: list[dict], config: dict) -> list[dict]:
    """Each measured training peak beside ftmatrix.resources' model of it, and the model at the
    reference micro-batch (what train_mem_mb requests, before its margin)."""
    from ftmatrix.resources import SHAPES, train_memory

    shape = SHAPES["Qwen/Qwen3-0.6B"]
    train = config["train"]
    out = []
    for row in rows:
        model = train_memory(shape, 0.6, row["method"], row["rank"], row["micro_batch"] * row["max_length"])
        reference = train_memory(shape, 0.6, row["method"], row["rank"],
                                 train["per_device_batch_size"] * train["max_length"])
        out.append({"job": f"{row['method']} r{row['rank']} at {row['micro_batch']} × {row['max_length']}",
                    "measured_mb": row["job_peak_mb"], "model_mb": model["total"],
                    "error": model["total"] / row["job_peak_mb"] - 1, "reference_mb": reference["total"]})
    return out


# ----------------------------------------------------------------------------- main


def print_projection(config: dict, args) -> dict:
    from ftmatrix.resources import GPUS, project_study

    projection = project_study(config, gpu=args.gpu, mfu=args.mfu)
    gpu = GPUS[args.gpu]
    print(f"\nProjected cost of the reference study on one {gpu.name} ({gpu.bf16_tflops:.0f} TFLOP/s bf16 dense, "
          f"{args.mfu:.0%} of it sustained; decoding: weights read once per step at {gpu.hbm_tb_s} TB/s, "
          f"at least {projection['assumptions']['decode_step_floor_s'] * 1e3:.0f} ms per step):")
    print(f"{'job':55s} {'PFLOP':>10s} {'GPU-h':>8s}")
    for job in projection["jobs"]:
        print(f"{job['job']:55s} {job['flops'] / 1e15:10.2f} {job['hours']:8.3f}")
    print(f"{'total (' + str(len(projection['jobs'])) + ' jobs)':55s} {projection['flops'] / 1e15:10.2f} "
          f"{projection['hours']:8.2f}   ≈ ${projection['usd']:.0f} at ${config['cost']['gpu_hour_usd']}/GPU-hour")
    return projection


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["train", "evaluate", "counts", "project"],
                        default=["counts", "project", "train", "evaluate"])
    parser.add_argument("--runs", nargs="*", help="training runs to do, e.g. full0@256 lora32@128 (default: all)")
    parser.add_argument("--work", type=Path, help="folder for the model weights and jobs (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", default="h100-sxm")
    parser.add_argument("--mfu", type=float, default=0.35, help="share of the GPU's bf16 peak sustained in training")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, spec, out = args.child
        import transformers

        transformers.utils.logging.set_verbosity_error()
        result = (child_train if kind == "train" else child_evaluate)(json.loads(Path(spec).read_text()))
        Path(out).write_text(json.dumps(result, default=str))
        return 0

    if not (TOKENIZER / "tokenizer_config.json").is_file():
        print(f"the real data folder {SHARED} is absent; set FTMATRIX_SHARED_DATA", file=sys.stderr)
        return 2
    import torch
    import transformers

    config = reference_config()
    results = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads,
               "cpu_count": os.cpu_count()}
    if "counts" in args.only:
        results["lora_counts"] = lora_counts(args.work or Path(tempfile.gettempdir()))
        print("\nTrainable parameters of Qwen3-0.6B with LoRA on all linear layers:")
        for row in results["lora_counts"]:
            same = "=" if row["peft"] == row["pipeline"] == row["formula"] else "≠"
            print(f"  r = {row['rank']:5d}: PEFT {row['peft']:>12,}  pipeline {row['pipeline']:>12,}  "
                  f"r × Σ(in+out) {row['formula']:>12,} {same}  ({row['percent_of_base']}% of the base)")
    if "project" in args.only:
        results["projection"] = print_projection(config, args)
    if "train" in args.only or "evaluate" in args.only:
        with tempfile.TemporaryDirectory(prefix="ftmatrix-shapes-") as tmp:
            work = args.work or Path(tmp)
            if "train" in args.only:
                results["train"] = measure_training(config, work, args)
            if "evaluate" in args.only:
                results["evaluate"] = measure_evaluation(config, work, args)
        if results.get("train"):
            print("\nMeasured against the model of memory (ftmatrix.resources):")
            for row in compare_with_model(results["train"], config):
                print(f"  {row['job']:28s} measured {row['measured_mb']:7,.0f} MB  model {row['model_mb']:7,.0f} MB  "
                      f"({row['error']:+.1%});  at the reference setting: {row['reference_mb']:7,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
