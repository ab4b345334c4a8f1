"""Shared pieces of the training tests (no tests here): real SQuAD v2 rows, a small-vocabulary Qwen3, settings."""

from __future__ import annotations

import copy
from pathlib import Path

from ftmatrix import config as study_config
from ftmatrix.io import write_jsonl


def squad_examples(shared_data: Path) -> list[dict]:
    """Real SQuAD v2 questions in the example format, through the project's task adapter."""
    from ftmatrix.tasks import get_task

    task = get_task("squad_v2")
    rows = task.read_local([str(shared_data / "squad_v2" / "dev-v2.0.half.json")], "squad_json")
    return task.to_examples(rows, "squad_v2")


def short_examples(examples: list[dict], n: int, max_chars: int = 500) -> list[dict]:
    """The first ``n`` examples whose context is short (keeps CPU tests quick)."""
    out = [e for e in examples if len(e["prompt"][0]["content"]) <= max_chars]
    assert len(out) >= n, f"only {len(out)} short examples"
    return out[:n]


def build_small_model(out_dir: Path, corpus_text: str, *, vocab_size: int = 600, hidden_size: int = 32,
                      pretrain_steps: int = 0) -> Path:
    """A Qwen3 with a byte-level BPE tokenizer trained on ``corpus_text`` (the project's builder); returns
    the manifest path. A small vocabulary keeps a CPU training step in the tens of milliseconds."""
    from ftmatrix.models import build_model

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir.parent / f"{out_dir.name}-corpus.txt"
    corpus.write_text(corpus_text, encoding="utf-8")
    config = study_config.validate({
        "models": [{"name": "small", "source": "build", "build": {
            "tokenizer": {"source": "train", "vocab_size": vocab_size}, "corpus": str(corpus),
            "hidden_size": hidden_size, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 2 * hidden_size,
            "max_position_embeddings": 1024, "pretrain_steps": pretrain_steps, "pretrain_batch_size": 8,
            "pretrain_seq_len": 128, "seed": 0}}],
        "tasks": [{"name": "squad_v2", "kind": "squad_v2", "source": {"type": "demo"}}],
    })
    build_model(config["models"][0], out_dir, corpus, threads=1)
    return out_dir / "manifest.json"


def corpus_of(examples: list[dict]) -> str:
    return "\n\n".join(e["prompt"][0]["content"] + "\n" + e["completion"][0]["content"] for e in examples)


def study(train: dict | None = None, lora: dict | None = None) -> dict:
    """A validated study config (schema defaults filled) with these train / lora overrides."""
    return study_config.validate({
        "models": [{"name": "small", "source": "local", "path": "unused"}],
        "tasks": [{"name": "squad_v2", "kind": "squad_v2", "source": {"type": "demo"}}],
        "train": copy.deepcopy(train or {}), "lora": copy.deepcopy(lora or {}),
    })


QUICK = {"max_steps": 6, "per_device_batch_size": 4, "gradient_accumulation_steps": 1, "max_length": 256,
         "save_steps": 100, "logging_steps": 1, "warmup_ratio": 0.0, "heldout_size": 8,
         "learning_rate": {"full": 1e-3, "lora": 1e-2}}


def settings_for(method: str = "full", rank: int = 0, seed: int = 0, train: dict | None = None,
                 lora: dict | None = None, enable_thinking: bool = False) -> dict:
    """What rules/train.smk's train_settings() passes for one run (a variant at one learning rate)."""
    from ftmatrix.grid import lr_text

    config = study({**QUICK, **(train or {})}, lora)
    rate = config["train"]["learning_rate"][method]
    return {
        "variant": f"small/{method}/r{rank}/squad_v2/seed{seed}/lr{lr_text(rate)}",
        "model": config["models"][0],
        "method": method,
        "rank": rank,
        "seed": seed,
        "train": config["train"],
        "lora": {k: v for k, v in config["lora"].items() if k != "ranks"},
        "enable_thinking": enable_thinking,
    }


def write_task(folder: Path, train_rows: list[dict], eval_rows: list[dict]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train_rows)
    write_jsonl(folder / "eval.jsonl", eval_rows)
    return folder / "train.jsonl", folder / "eval.jsonl"


def job_paths(root: Path, settings: dict) -> dict:
    variant = root / "results" / "train" / settings["variant"]
    return {"output_dir": str(variant / "model"), "metrics_file": str(variant / "train_metrics.json"),
            "checkpoint_dir": str(variant / "checkpoints")}
