"""Quality-pass engines side by side: transformers vs vLLM (evaluate.engine) vs lm-eval's hf and
vLLM backends.

Same model folder, same ARC-Challenge rows, same rendered prompts (the model's chat template),
greedy to the same end-of-turn token and token budget, fp32 on the CPU with the same threads.
For each engine: samples/s of the generation alone (start-up excluded), samples/s with
start-up (loading the model; for vLLM also starting its process and engine), whether the text
equals the transformers engine's (every difference listed), and the crossover: the number of
samples below which vLLM's start-up makes it slower than transformers,
``n* = (startup_vllm − startup_tf) / (1/rate_tf − 1/rate_vllm)``.

Sizes: ``demo`` (random weights of the demo models' shape: hidden 128, 2 layers, 64-wide heads,
with the real Qwen3 tokenizer) and ``0.6b`` (Qwen3-0.6B's published shape, random weights).
A random model never says its end-of-turn token, so every sample runs to the budget:
``--rows`` × ``--max-new-tokens`` tokens exactly.

    python bench/eval_engines.py --size demo --rows 200 --max-new-tokens 64
    python bench/eval_engines.py --size 0.6b --rows 200 --max-new-tokens 64 --json docs/eval_engines_06b.json
    python bench/eval_engines.py --size 0.6b --lora 64 --engines transformers,vllm,vllm-adapter

With ``--lora RANK`` the model is a LoRA variant (a random adapter of that rank on every linear
layer): ``transformers`` and ``vllm`` merge it first (``evaluate.merge_lora: true``, the merge is
part of the start-up), ``vllm-adapter`` hands it to vLLM's own LoRA support on the base weights.

Needs ../shared/data (the ARC release, the Qwen3 tokenizer), lm-eval, and .venv-vllm (make vllm);
lm-eval's vLLM backend also needs lm-eval in .venv-vllm (make vllm-lm-eval).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES = {
    "demo": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=64),
    # Qwen3-0.6B's config.json
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128),
}


def load_harness():
    spec = importlib.util.spec_from_file_location("ftmatrix_lm_eval_harness", ROOT / "bench" / "lm_eval" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(out_dir: Path, tokenizer_dir: Path, shape: dict) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                         **shape)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_adapter(out_dir: Path, model_dir: Path, rank: int) -> Path:
    """A LoRA adapter of ``rank`` on every linear layer, with random (non-zero) weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=rank, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(out_dir)
    return out_dir


def run_engine(engine: str, work: Path, manifest: Path, eval_file: Path, max_new_tokens: int, batch_size: int,
               threads: int, adapter: Path | None = None) -> dict:
    """One engine through the pipeline's evaluate_cell: ``transformers``, ``vllm``, or with an
    adapter ``vllm-adapter`` (evaluate.merge_lora false: vLLM's LoRA support; the others merge)."""
    from ftmatrix import io
    from ftmatrix.evaluate import evaluate_cell

    method = "lora" if adapter else "base"
    settings = {"cell": f"bench/{method}/r0/none/seed0/arc", "model": {"name": "bench", "source": "local"},
                "method": method, "task": {"name": "arc", "kind": "arc", "max_new_tokens": max_new_tokens},
                "evaluate": {"batch_size": batch_size, "latency_samples": 0, "warmup": 0,
                             "merge_lora": engine != "vllm-adapter", "precision": "fp32",
                             "engine": engine.removesuffix("-adapter")},
                "enable_thinking": False}
    out = work / engine
    started = time.perf_counter()
    record = evaluate_cell(settings, manifest, adapter, eval_file, out / "generations.jsonl",
                           out / "generation.json", None, threads, progress=False)
    total = time.perf_counter() - started
    rows = io.read_jsonl(out / "generations.jsonl")
    n = len(rows)
    return {"engine": engine, "n": n, "startup_s": total - record.quality_pass_s, "generate_s": record.quality_pass_s,
            "total_s": total, "samples_per_s": n / record.quality_pass_s, "samples_per_s_with_startup": n / total,
            "texts": [r["generated"] for r in rows], "ids": [r["id"] for r in rows]}


def run_lm_eval(h, model_dir: Path, task_dir: Path, batch_size: int) -> dict:
    started = time.perf_counter()
    runner = h.LmEvalRunner(model_dir, batch_size)
    out = runner.run(task_dir)
    total = time.perf_counter() - started
    generate_s = out["n"] / out["samples_per_s"]
    return {"engine": "lm-eval (hf)", "n": out["n"], "startup_s": total - generate_s, "generate_s": generate_s,
            "total_s": total, "samples_per_s": out["samples_per_s"], "samples_per_s_with_startup": out["n"] / total,
            "by_id": out["generated"]}


def run_lm_eval_vllm(h, model_dir: Path, task_dir: Path, rows: int, threads: int) -> dict:
    """lm-eval's vLLM backend, in .venv-vllm (bench/lm_eval/vllm_backend.py); its start-up includes
    starting the process and importing lm-eval and vLLM."""
    import subprocess

    from ftmatrix.engines.vllm_engine import kv_cache_bytes, vllm_python

    out = task_dir / "lm_eval_vllm.json"
    kv = kv_cache_bytes(model_dir, "float32", 2048, rows)
    started = time.perf_counter()
    subprocess.run([str(vllm_python()), str(ROOT / "bench" / "lm_eval" / "vllm_backend.py"), str(model_dir),
                    str(task_dir), h.TASK_NAME, str(out), str(kv), str(threads)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}, cwd=task_dir)
    total = time.perf_counter() - started
    got = json.loads(out.read_text())
    return {"engine": "lm-eval (vllm)", "n": got["n"], "startup_s": total - got["generate_s"],
            "generate_s": got["generate_s"], "total_s": total, "samples_per_s": got["n"] / got["generate_s"],
            "samples_per_s_with_startup": got["n"] / total, "by_id": got["generated"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--size", choices=sorted(SHAPES), default="demo")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="transformers,vllm,lm-eval,lm-eval-vllm",
                        help="any of transformers, vllm, lm-eval (its hf backend), lm-eval-vllm (its vllm backend)")
    parser.add_argument("--lora", type=int, metavar="RANK",
                        help="evaluate a LoRA variant of this rank (random adapter on every linear layer): "
                             "transformers and vllm merge it, vllm-adapter gives it to vLLM's LoRA support")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    h = load_harness()
    work = Path(tempfile.mkdtemp(prefix="ftmatrix-engines-"))
    model_dir = build_model(work / "model", args.shared_data / "qwen3-tokenizer", SHAPES[args.size])
    examples = h.arc_examples(args.shared_data, "Test", args.rows)
    from ftmatrix import io

    eval_file = work / "eval.jsonl"
    io.write_jsonl(eval_file, examples)
    from ftmatrix.models import link_model

    link_model({"name": "bench", "source": "local", "path": str(model_dir), "trust_remote_code": False},
               work / "manifest", root=work)
    manifest = work / "manifest" / "manifest.json"
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    adapter = build_adapter(work / "adapter", model_dir, args.lora) if args.lora else None
    if adapter and any(e.startswith("lm-eval") for e in engines):
        parser.error("--lora compares the pipeline's engines only; leave lm-eval and lm-eval-vllm out of --engines")
    results = {}
    for engine in engines:
        if engine == "lm-eval":
            task_dir = h.write_task(work / "lm_eval_task", model_dir, examples, args.max_new_tokens)
            results[engine] = run_lm_eval(h, model_dir, task_dir, args.batch_size)
        elif engine == "lm-eval-vllm":
            task_dir = h.write_task(work / "lm_eval_vllm_task", model_dir, examples, args.max_new_tokens)
            try:
                results[engine] = run_lm_eval_vllm(h, model_dir, task_dir, args.rows, args.threads)
            except Exception as exc:       # reported, and the other engines' results kept
                print(f"lm-eval-vllm did not run: {exc} (is lm-eval in .venv-vllm? make vllm-lm-eval)", flush=True)
                continue
        else:
            results[engine] = run_engine(engine, work, manifest, eval_file, args.max_new_tokens, args.batch_size,
                                         args.threads, adapter)
        r = results[engine]
        print(f"{engine:<13} {r['samples_per_s']:8.2f} samples/s generating, {r['samples_per_s_with_startup']:8.2f} "
              f"with start-up ({r['startup_s']:.1f} s start-up, {r['generate_s']:.1f} s generating)", flush=True)
    reference = results.get("transformers")
    report = {"size": args.size, "shape": SHAPES[args.size], "lora_rank": args.lora, "rows": args.rows,
              "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "threads": args.threads, "torch": torch.__version__, "engines": {}}
    for engine, r in results.items():
        if "by_id" in r and reference:
            r["texts"] = [r["by_id"].get(i) for i in reference["ids"]]
        entry = {k: v for k, v in r.items() if k not in ("texts", "ids", "by_id")}
        if reference and engine != "transformers":
            diffs = [i for i, (a, b) in enumerate(zip(reference["texts"], r["texts"])) if a != b]
            entry["same_text"] = len(r["texts"]) - len(diffs)
            entry["differences"] = [{"row": i, "transformers": reference["texts"][i], engine: r["texts"][i]}
                                    for i in diffs]
            entry["speedup_vs_transformers"] = r["samples_per_s"] / reference["samples_per_s"]
        report["engines"][engine] = entry
    if reference and "vllm" in results:
        v = results["vllm"]
        per_t, per_v = 1 / reference["samples_per_s"], 1 / v["samples_per_s"]
        report["crossover_samples"] = ((v["startup_s"] - reference["startup_s"]) / (per_t - per_v)
                                       if per_t > per_v else None)
        print(f"vLLM vs transformers: {v['samples_per_s'] / reference['samples_per_s']:.2f}× generating; "
              f"identical text on {report['engines']['vllm']['same_text']} of {v['n']}; crossover at "
              f"{report['crossover_samples']:.0f} samples" if report["crossover_samples"] else "vLLM is not faster")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
