"""bf16, the GPU default, run on a CPU that computes in bf16: training and evaluation of a small
model through train_variant and evaluate_cell, so the default GPU precision path is not first
run on a user's GPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_train_support import build_small_model, corpus_of, job_paths, settings_for, short_examples, \
    squad_examples, write_task

torch = pytest.importorskip("torch")


def _cpu_has_bf16() -> bool:
    from ftmatrix.train import cpu_has_bf16

    return cpu_has_bf16()


pytestmark = pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX "
                                                            "instructions), so the bf16 path is not run here")


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_data):
    """A small Qwen3 trained briefly on real SQuAD v2 rows in bf16 and in fp32 (full fine-tuning)."""
    from ftmatrix.train import train_variant

    examples = squad_examples(shared_data)
    root = tmp_path_factory.mktemp("bf16")
    torch.set_num_threads(1)
    manifest = build_small_model(root / "model", corpus_of(examples[:600]))
    rows = short_examples(examples, 40)
    train_file, eval_file = write_task(root / "task", rows[:32], rows[32:40])
    runs = {}
    for precision in ("bf16", "fp32"):
        settings = settings_for("full", train={"precision": precision})
        paths = job_paths(root / precision, settings)
        metrics = train_variant(settings, str(manifest), str(train_file), str(eval_file), config_hash="test",
                                threads=1, **paths)
        runs[precision] = (metrics.to_json(), paths)
    return {"manifest": manifest, "eval": eval_file, "runs": runs, "root": root}


def test_bf16_training_runs_through_train_variant_and_learns(job):
    metrics, paths = job["runs"]["bf16"]
    fp32, _ = job["runs"]["fp32"]
    assert metrics["precision"] == "bf16" and metrics["device"] == "cpu"
    assert all(math.isfinite(loss) for _, loss in metrics["loss_curve"])
    assert metrics["heldout_loss_after"] < metrics["heldout_loss_before"]
    # The same steps in fp32 agree closely but not bit for bit: bf16 autocast was in effect.
    assert metrics["heldout_loss_after"] == pytest.approx(fp32["heldout_loss_after"], rel=0.05)
    assert metrics["loss_curve"] != fp32["loss_curve"]
    assert Path(paths["output_dir"], "model.safetensors").is_file()


def test_bf16_evaluation_loads_the_trained_model_in_bf16_and_generates(job, tmp_path):
    from ftmatrix.evaluate import evaluate_cell, load_variant, read_manifest
    from ftmatrix.io import read_jsonl

    _, paths = job["runs"]["bf16"]
    settings = {"cell": "small/full/r0/squad_v2/seed0/squad_v2", "model": {"name": "small", "source": "build"},
                "method": "full", "task": {"name": "squad_v2", "kind": "squad_v2", "max_new_tokens": 8},
                "evaluate": {"batch_size": 4, "latency_samples": 3, "warmup": 1, "merge_lora": True,
                             "precision": "bf16"},
                "enable_thinking": False}
    summary = evaluate_cell(settings, job["manifest"], paths["output_dir"], job["eval"], tmp_path / "g.jsonl",
                            tmp_path / "generation.json", "test", 1, progress=False)
    assert summary.precision == "bf16" and summary.precision_requested == "bf16" and summary.device == "cpu"
    rows = read_jsonl(tmp_path / "g.jsonl")
    assert len(rows) == 8 and all(1 <= r["output_tokens"] <= 8 for r in rows)
    assert sum(r["latency_s"] is not None for r in rows) == 3

    model, _, _ = load_variant(read_manifest(job["manifest"]), "full", paths["output_dir"], precision="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
