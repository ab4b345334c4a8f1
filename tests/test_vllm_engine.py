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
def vllm_env():
    from ftmatrix.engines.vllm_engine import vllm_python

    if not vllm_python().exists():
        import os

        reason = f"no vLLM environment at {vllm_python().parent.parent}; create it with `make vllm`"
        if os.environ.get("FTMATRIX_REQUIRE_VLLM") == "1":
            pytest.fail(f"{reason} (FTMATRIX_REQUIRE_VLLM=1 requires it)")
        pytest.skip(reason)
    return vllm_python()


@pytest.fixture(scope="module")
def model_h64(tmp_path_factory, qwen_tokenizer_dir, vllm_env):
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
    info, out = compare(tmp_path, "lora", model_h64[1], arc_eval, trained=_adapter(tmp_path, model_h64[0]))
    assert info["merge_lora"] is True
    assert (out / "vllm-merged" / "model.safetensors").is_file()


def _adapter(tmp_path, model_dir, rank=4):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(2)
    adapter = get_peft_model(base, LoraConfig(r=rank, lora_alpha=8, target_modules="all-linear",
                                              init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "lora")
    return tmp_path / "lora"


def test_vllm_lora_support_applies_an_unmerged_adapter_with_the_transformers_answers(tmp_path, model_h64, arc_eval):
    """evaluate.merge_lora: false with vLLM: the adapter goes to vLLM's own LoRA support on the base
    weights (nothing merged, nothing saved), against PEFT's unmerged adapter in transformers."""
    lora = _adapter(tmp_path, model_h64[0])
    cfg = engine_settings("lora", "vllm")
    cfg["evaluate"]["merge_lora"] = False
    ref_cfg = engine_settings("lora", "transformers")
    ref_cfg["evaluate"]["merge_lora"] = False
    ref, ref_info, _ = run(tmp_path, ref_cfg, model_h64[1], arc_eval, lora, "tf-unmerged")
    got, got_info, out = run(tmp_path, cfg, model_h64[1], arc_eval, lora, "vllm-adapter")
    assert (got_info["engine"], got_info["merge_lora"]) == ("vllm", False)
    assert not (out / "vllm-merged").exists()
    same = sum(a["generated"] == b["generated"] and a["output_tokens"] == b["output_tokens"] for a, b in zip(ref, got))
    assert same >= 0.99 * len(ref), [(a["generated"], b["generated"]) for a, b in zip(ref, got)]
    assert len({r["generated"] for r in got}) > 1


def test_a_timing_round_by_vllm_times_each_request_alone_and_says_so(tmp_path, model_h64, shared_data):
    """evaluate.timing_engine: vllm: every cell of a round is timed by vLLM, one request at a time,
    with the text the transformers engine times, and the records name the engine."""
    from ftmatrix.records import TimingRecord
    from ftmatrix.timing import time_round
    from tests.test_evaluate import arc_eval_rows

    evals = {}
    for task, rows in (("a", arc_eval_rows(shared_data, 8)), ("b", arc_eval_rows(shared_data, 8)[::-1])):
        evals[task] = tmp_path / task / "eval.jsonl"
        io.write_jsonl(evals[task], rows)
    cells = ["tiny/base/r0/none/seed0/a", "tiny/base/r0/none/seed0/b"]
    records = {}
    for engine in ("transformers", "vllm"):
        outputs = {c: tmp_path / engine / c / "timing" / "round1.json" for c in cells}
        settings = {"round": 1, "rounds": 3, "enable_thinking": False, "cells": cells,
                    "evaluate": {"latency_samples": 6, "warmup": 2, "precision": "fp32", "merge_lora": True,
                                 "timing_engine": engine},
                    "tasks": {"a": {"kind": "arc", "max_new_tokens": 16}, "b": {"kind": "arc", "max_new_tokens": 8}}}
        time_round(settings, manifests={"tiny": str(model_h64[1])}, trained={}, eval_files=evals,
                   outputs={c: str(p) for c, p in outputs.items()}, config_hash="h", max_threads=2, progress=False)
        records[engine] = {c: TimingRecord.read(outputs[c]) for c in cells}
    for cell in cells:
        tf, vl = records["transformers"][cell], records["vllm"][cell]
        assert (tf.engine, vl.engine) == ("transformers", "vllm")
        assert [s["id"] for s in vl.samples] == [s["id"] for s in tf.samples] and len(vl.samples) == 6
        assert [(s["generated"], s["output_tokens"]) for s in vl.samples] == \
               [(s["generated"], s["output_tokens"]) for s in tf.samples]
        for s in vl.samples:
            assert 0 < s["ttft_s"] <= s["latency_s"] < 60
            if s["output_tokens"] > 2:      # the first token is timed apart from the last
                assert s["ttft_s"] < s["latency_s"]
    # vLLM's start-up is the first cell's load time; the second cell reuses the process
    assert records["vllm"][cells[0]].load_s > records["transformers"][cells[0]].load_s
    assert records["vllm"][cells[1]].load_s == 0
    # each cell's budget is its own: task b stops at 8 tokens
    assert max(s["output_tokens"] for s in records["vllm"][cells[1]].samples) <= 8


def test_a_study_generated_and_timed_by_vllm_says_so_in_its_matrix_and_journal(tmp_path, root, vllm_env):
    """studies/vllm-test.yaml through Snakemake: the quality pass in vLLM with the LoRA adapter through
    vLLM's LoRA support, the three timing rounds by vLLM; the matrix and the journal name both."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from ftmatrix.records import GenerationRecord, TimingRecord

    journal = "results/vllm-test/journal/journal.html"
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
                          "--cores", "2", journal, "--configfile", str(root / "studies" / "vllm-test.yaml")],
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    matrix = pd.read_csv(tmp_path / "results" / "vllm-test" / "matrix.csv")
    assert len(matrix) == 1
    row = matrix.iloc[0]
    assert (row["engine"], row["timing_engine"], bool(row["merge_lora"])) == ("vllm", "vllm", False)
    assert row["timing_rounds"] == 3 and row["n_timed"] == 4 and row["latency_mean_s"] > 0
    assert row["timed_mismatches"] == 0        # vLLM timed the texts vLLM generated
    cell = tmp_path / "results" / "vllm-test" / "eval" / row["cell"]
    assert GenerationRecord.read(cell / "generation.json").engine == "vllm"
    assert not (cell / "vllm-merged").exists()                  # the adapter, not merged weights
    rounds = [TimingRecord.read(cell / "timing" / f"round{r}.json") for r in (1, 2, 3)]
    assert {r.engine for r in rounds} == {"vllm"} and all(r.load_s > 0 for r in rounds)
    html = (tmp_path / journal).read_text(encoding="utf-8")
    assert "quality pass: vllm (1 cell)" in html and "latency timed by vllm in the timing rounds" in html
