"""Test helpers that build real (tiny) artefacts."""

from __future__ import annotations

from pathlib import Path


def make_tiny_qwen3(out_dir: Path, tokenizer_dir: Path, *, hidden_size: int = 32, layers: int = 2,
                    seed: int = 0) -> Path:
    """Save a randomly initialised Qwen3 with the given tokenizer to ``out_dir`` (safetensors)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


PROVENANCE = {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
              "config_hash": "cfg0123456789abc", "libraries": {"ftmatrix": "0.1.0", "torch": "2.13.0"}}


def device_block(device: str = "cpu") -> dict:
    """What ftmatrix.provenance.device_info() records for a machine."""
    return {"host": "test-host", "platform": "Linux-test", "python": "3.11.7", "cpu_count": 2,
            "torch_threads": 1, "cpu_capability": "AVX2", "device": device.split(":")[0],
            "gpu": "NVIDIA H200" if device != "cpu" else None}


def generation_record(cell: str, n: int, *, n_timed: int = 0, device: str = "cpu", max_new_tokens: int = 16,
                      provenance: dict | None = None, **overrides):
    """A complete generation.json record as ftmatrix.evaluate writes it (plausible values)."""
    from ftmatrix.records import Decoding, GenerationRecord

    method = cell.split("/")[1]
    fields = dict(
        cell=cell, model={"name": cell.split("/")[0], "id": f"ftmatrix-build/{cell.split('/')[0]}",
                          "revision": "build", "resolved_revision": "0123456789abcdef", "path": "data/models/m",
                          "params": 1_000_000, "trust_remote_code": False},
        method=method, trained_dir=None if method == "base" else f"results/train/{cell.rsplit('/', 1)[0]}/model",
        adapter=None, merge_lora=True if method == "lora" else None, enable_thinking=False, precision="fp32",
        precision_requested="auto", device=device, threads=1, batch_size=16, max_new_tokens=max_new_tokens,
        decoding=Decoding(do_sample=False, num_beams=1, stop_tokens=["<|im_end|>"], stop_token_ids=[2]),
        n=n, n_timed=n_timed, latency_samples=n_timed, warmup=1, timed_mismatches=0, hit_limit=0,
        generated_this_run=n, resumed_samples=0, load_s=0.2, tokenize_s=0.01, wall_s=1.5, quality_pass_s=1.0,
        timed_pass_s=0.5, samples_per_s=n / 1.5,
        provenance=provenance if provenance is not None else {**PROVENANCE, "device": device_block(device)})
    fields.update(overrides)
    return GenerationRecord(**fields)


def train_metrics_record(variant, *, provenance: dict | None = None, device: str = "cpu", **overrides):
    """A TrainMetrics as train_variant writes it, for a variant (ftmatrix.grid.Variant) of a synthetic tree."""
    from ftmatrix.records import TrainMetrics

    trainable = 1_000_000 if variant.method == "full" else variant.rank * 2_000
    wall = overrides.pop("wall_time_s", 10.0)
    values = dict(
        variant={"model": variant.model, "method": variant.method, "rank": variant.rank,
                 "train_task": variant.train_task, "seed": variant.seed},
        wall_time_s=wall, wall_time_this_run_s=wall, job_time_s=wall + 2.0, resumed_from_step=None,
        train_tokens=12000, tokens_per_s=1100.0, steps=14, epochs=2.0, loss_curve=[[1, 3.0], [14, 1.0]],
        final_loss=1.0, heldout_loss_before=3.1, heldout_loss_after=1.2, heldout_examples=60,
        heldout_examples_used=60, peak_memory_mb=512.0, peak_memory_kind="cpu_peak_rss",
        trainable_params=trainable, total_params=1_000_000, device=device.split(":")[0], precision="fp32",
        threads=1, attn_implementation="sdpa", padding_free=False, batching={"reason": "test"},
        learning_rate=1e-3 if variant.method == "full" else 1e-2,
        lora={"r": variant.rank, "lora_alpha": 32, "use_rslora": False, "dropout": 0.05,
              "target_modules": "all-linear"} if variant.method == "lora" else None,
        enable_thinking=False, train_examples=100, train_examples_used=100, truncated_examples=0,
        dropped_examples=0, max_length=1024, settings_hash="abc",
        provenance={**(provenance or PROVENANCE), "device": device_block(device)})
    values.update(overrides)
    return TrainMetrics(**values)
