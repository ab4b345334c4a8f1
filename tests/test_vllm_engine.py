"""The vllm engine (evaluate.engine: vllm): the quality pass as one offline vLLM batch in .venv-vllm
gives the transformers engine's answers, for a base model and a LoRA variant (merged first).

The model is a tiny Qwen3 with the real Qwen3 tokenizer and 64-wide heads (vLLM's CPU attention
refuses narrower ones), on real ARC-Challenge questions. Skipped with the reason where
.venv-vllm is absent, unless FTMATRIX_REQUIRE_VLLM=1 (CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftmatrix import io
from tests.helpers import make_tiny_qwen3
from tests.test_evaluate import arc_eval_rows, run, settings, write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_h64(tmp_path_factory, qwen_tokenizer_dir):
    from ftmatrix.engines.vllm_engine import vllm_python

    if not vllm_python().exists():
        import os

        reason = f"no vLLM environment at {vllm_python().parent.parent}; create it with `make vllm`"
        if os.environ.get("FTMATRIX_REQUIRE_VLLM") == "1":
            pytest.fail(f"{reason} (FTMATRIX_REQUIRE_VLLM=1 requires it)")
        pytest.skip(reason)
    folder = make_tiny_qwen3(tmp_path_factory.mktemp("h64"), qwen_tokenizer_dir, hidden_size=256, seed=3)
    return folder, write_manifest(tmp_path_factory.mktemp("manifest") / "manifest.json", folder)


@pytest.fixture(scope="module")
def arc_eval(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("arc") / "eval.jsonl"
    io.write_jsonl(path, arc_eval_rows(shared_data, 40))
    return path


def engine_settings(method: str, engine: str) -> dict:
    cfg = settings(method, max_new_tokens=24, batch_size=8, latency_samples=0, warmup=0)
    cfg["evaluate"]["engine"] = engine
    return cfg


def compare(tmp_path, method, manifest, arc_eval, trained=None):
    ref, ref_info, _ = run(tmp_path, engine_settings(method, "transformers"), manifest, arc_eval, trained, "tf")
    got, got_info, out = run(tmp_path, engine_settings(method, "vllm"), manifest, arc_eval, trained, "vllm")
    assert (ref_info["engine"], got_info["engine"]) == ("transformers", "vllm")
    differences = [(a["id"], a["generated"], b["generated"]) for a, b in zip(ref, got)
                   if (a["generated"], a["output_tokens"], a["hit_limit"]) !=
                   (b["generated"], b["output_tokens"], b["hit_limit"])]
    assert len(differences) <= 0.01 * len(ref), f"{len(differences)} of {len(ref)} differ: {differences}"
    assert len({r["generated"] for r in ref}) > 1          # distinct answers: the comparison says something
    return got_info, out


def test_vllm_base_answers_are_the_transformers_answers(tmp_path, model_h64, arc_eval):
    compare(tmp_path, "base", model_h64[1], arc_eval)


def test_vllm_lora_variant_is_merged_and_gives_the_transformers_answers(tmp_path, model_h64, arc_eval):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_h64[0])
    torch.manual_seed(2)
    adapter = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                              init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "lora")
    info, out = compare(tmp_path, "lora", model_h64[1], arc_eval, trained=tmp_path / "lora")
    assert info["merge_lora"] is True
    assert (out / "vllm-merged" / "model.safetensors").is_file()
