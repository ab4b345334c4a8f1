"""The evaluation stage's generation: greedy decoding, stop tokens, timing, loading of variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftmatrix import io
from ftmatrix.errors import DataError, ModelError

torch = pytest.importorskip("torch")


# --------------------------------------------------------------------------- fixtures and helpers

def arc_eval_rows(shared_data: Path, n: int) -> list[dict]:
    """Real ARC-Challenge questions in the example format, with a plain multiple-choice prompt."""
    rows = []
    path = shared_data / "arc" / "ARC-Challenge" / "ARC-Challenge-Test.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines()[:n]:
        raw = json.loads(line)
        choices = "\n".join(f"{c['label']}. {c['text']}" for c in raw["question"]["choices"])
        prompt = f"{raw['question']['stem']}\n{choices}\nAnswer with the letter of the correct choice."
        rows.append({"id": raw["id"], "prompt": [{"role": "user", "content": prompt}],
                     "completion": [{"role": "assistant", "content": raw["answerKey"]}],
                     "reference": {"label": raw["answerKey"],
                                   "labels": [c["label"] for c in raw["question"]["choices"]]}})
    return rows


def write_manifest(path: Path, model_dir: Path, name: str = "tiny") -> Path:
    """The model's manifest, written by the data stage's own writer (link_model) into ``path``'s folder."""
    from ftmatrix.models import link_model

    link_model({"name": name, "source": "local", "path": str(model_dir), "trust_remote_code": False},
               path.with_suffix(""), root=path.parent)
    return path.with_suffix("") / "manifest.json"


def settings(method="base", *, cell=None, max_new_tokens=8, batch_size=4, latency_samples=None, warmup=1,
             merge_lora=True, precision="auto"):
    cell = cell or {"base": "tiny/base/r0/none/seed0/arc", "full": "tiny/full/r0/arc/seed0/arc",
                    "lora": "tiny/lora/r4/arc/seed0/arc"}[method]
    return {"cell": cell, "model": {"name": "tiny", "source": "local"}, "method": method,
            "task": {"name": "arc", "kind": "arc", "max_new_tokens": max_new_tokens},
            "evaluate": {"batch_size": batch_size, "latency_samples": latency_samples, "warmup": warmup,
                         "merge_lora": merge_lora, "precision": precision},
            "enable_thinking": False}


@pytest.fixture(scope="module")
def arc_eval(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("arc") / "eval.jsonl"
    io.write_jsonl(path, arc_eval_rows(shared_data, 10))
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, tiny_qwen3) -> Path:
    return write_manifest(tmp_path_factory.mktemp("manifest") / "manifest.json", tiny_qwen3)


@pytest.fixture(scope="module")
def base_rows(tmp_path_factory, manifest, arc_eval) -> list[dict]:
    """The untuned tiny model's generations with the default test settings (no timing)."""
    rows, _, _ = run(tmp_path_factory.mktemp("base"), settings(latency_samples=0), manifest, arc_eval)
    return rows


def run(tmp_path, cfg, manifest, eval_file, trained=None, name="out"):
    from ftmatrix.evaluate import evaluate_cell

    out = tmp_path / name
    from ftmatrix.records import GenerationRecord, GenerationRow

    summary = evaluate_cell(cfg, manifest, trained, eval_file, out / "generations.jsonl", out / "generation.json",
                            "hash0", 1, progress=False)
    # what was written reads back through the records every reader uses
    assert GenerationRecord.read(out / "generation.json") == summary
    rows = io.read_jsonl(out / "generations.jsonl")
    for number, row in enumerate(rows, start=1):
        assert GenerationRow.from_json(row, f"line {number}").to_json() == row
    return rows, summary.to_json(), out


# --------------------------------------------------------------------------- tests

def test_generations_have_one_row_per_sample_with_tokens_and_timing(tmp_path, manifest, arc_eval, tiny_qwen3):
    from transformers import AutoTokenizer

    rows, summary, out = run(tmp_path, settings(latency_samples=4, max_new_tokens=6), manifest, arc_eval)
    eval_rows = io.read_jsonl(arc_eval)
    assert [r["id"] for r in rows] == [r["id"] for r in eval_rows]
    tok = AutoTokenizer.from_pretrained(tiny_qwen3)
    for row, ex in zip(rows, eval_rows):
        # the recorded prompt is the chat template's rendering, thinking switched off
        assert row["prompt"] == tok.apply_chat_template(ex["prompt"], tokenize=False, add_generation_prompt=True,
                                                        enable_thinking=False)
        assert row["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert row["input_tokens"] == len(tok(row["prompt"], add_special_tokens=False)["input_ids"])
        assert 1 <= row["output_tokens"] <= 6
        assert row["hit_limit"] == (row["output_tokens"] == 6 and "<|im_end|>" not in row["generated"])
    timed = [r for r in rows if r["latency_s"] is not None]
    assert [r["id"] for r in timed] == [r["id"] for r in rows[:4]]     # the first latency_samples, in file order
    for r in timed:
        assert 0 < r["ttft_s"] <= r["latency_s"]
        assert r["tpot_s"] == pytest.approx((r["latency_s"] - r["ttft_s"]) / (r["output_tokens"] - 1))
        assert r["timed_matches"] is True                                  # fp32: batch-size-1 text == batched text
    for r in rows[4:]:
        assert r["latency_s"] is r["ttft_s"] is r["tpot_s"] is r["timed_matches"] is None
    info = io.read_json(out / "generation.json")
    assert info == json.loads(json.dumps(summary, default=str))
    assert info["n"] == 10 and info["n_timed"] == 4 and info["timed_mismatches"] == 0
    assert info["precision"] == "fp32" and info["device"] == "cpu" and info["enable_thinking"] is False
    assert info["max_new_tokens"] == 6 and info["batch_size"] == 4 and info["warmup"] == 1
    assert info["decoding"] == {"do_sample": False, "num_beams": 1, "stop_tokens": ["<|im_end|>"],
                                "stop_token_ids": [tok.convert_tokens_to_ids("<|im_end|>")]}
    assert info["provenance"]["config_hash"] == "hash0"
    assert not list(out.glob("*.partial*"))                               # partial files cleaned up


def test_batched_text_equals_batch_size_one_text(tmp_path, manifest, arc_eval):
    """Left padding must not change greedy output: batch sizes 1, 3 and 10 give the same generations."""
    keys = ("id", "generated", "output_tokens", "hit_limit", "input_tokens")
    results = []
    for bs in (1, 3, 10):
        rows, summary, _ = run(tmp_path, settings(batch_size=bs, latency_samples=0, max_new_tokens=10), manifest,
                               arc_eval, name=f"bs{bs}")
        results.append([{k: r[k] for k in keys} for r in rows])
        assert summary["n_timed"] == 0
    assert results[0] == results[1] == results[2]


def test_stops_at_the_end_of_turn_token_and_counts_it(tmp_path, arc_eval, tiny_qwen3):
    """Make the model's end-of-turn token one it actually produces; generation must stop there."""
    from transformers import AutoTokenizer

    rows, _, _ = run(tmp_path, settings(max_new_tokens=8, latency_samples=0), write_manifest(
        tmp_path / "m0.json", tiny_qwen3), arc_eval, name="free")
    tok = AutoTokenizer.from_pretrained(tiny_qwen3)
    first = rows[0]
    ids = tok(first["generated"], add_special_tokens=False)["input_ids"]
    stop = ids[2]                                   # the third generated token becomes "end of turn"
    model_dir = tmp_path / "stopper"
    shutil.copytree(tiny_qwen3, model_dir)
    gen_cfg = json.loads((model_dir / "generation_config.json").read_text())
    gen_cfg["eos_token_id"] = stop
    (model_dir / "generation_config.json").write_text(json.dumps(gen_cfg))

    rows2, summary, _ = run(tmp_path, settings(max_new_tokens=8, latency_samples=None),
                            write_manifest(tmp_path / "m1.json", model_dir), arc_eval, name="stopped")
    assert summary["decoding"]["stop_token_ids"][0] == stop
    r = rows2[0]
    assert r["hit_limit"] is False
    # at most three tokens, the stop token counted but not in the text
    assert r["output_tokens"] <= 3
    assert r["generated"] == tok.decode(ids[: r["output_tokens"] - 1], skip_special_tokens=True)
    assert r["timed_matches"] is True
    assert summary["hit_limit"] == sum(x["hit_limit"] for x in rows2)


def test_sampling_defaults_shipped_with_a_model_neither_apply_nor_warn(tmp_path, arc_eval, tiny_qwen3, base_rows,
                                                                        recwarn, caplog):
    """Qwen3 ships do_sample=True, temperature=0.6, top_p=0.95, top_k=20: decoding must stay greedy."""
    model_dir = tmp_path / "sampler"
    shutil.copytree(tiny_qwen3, model_dir)
    gen_cfg = json.loads((model_dir / "generation_config.json").read_text())
    gen_cfg.update(do_sample=True, temperature=0.6, top_p=0.95, top_k=20)
    (model_dir / "generation_config.json").write_text(json.dumps(gen_cfg))
    caplog.clear()
    sampled, _, _ = run(tmp_path, settings(latency_samples=0), write_manifest(tmp_path / "b.json", model_dir),
                        arc_eval, name="sampler")
    assert [r["generated"] for r in sampled] == [r["generated"] for r in base_rows]
    messages = [str(w.message) for w in recwarn] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "temperature" in m or "top_p" in m or "top_k" in m], messages


def test_full_variant_loads_its_trained_weights(tmp_path, manifest, arc_eval, tiny_qwen3, base_rows):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # a trained folder with its own weights (here: perturbed copies of the base)
    torch.manual_seed(1)
    full = AutoModelForCausalLM.from_pretrained(tiny_qwen3)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.05 * torch.randn_like(p))
    full.save_pretrained(tmp_path / "full", safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_qwen3).save_pretrained(tmp_path / "full")
    full_rows, full_info, _ = run(tmp_path, settings("full", latency_samples=0), manifest, arc_eval,
                                  trained=tmp_path / "full", name="full")
    assert full_info["method"] == "full" and full_info["trained_dir"] == str(tmp_path / "full")
    assert full_info["merge_lora"] is None and full_info["adapter"] is None
    assert [r["generated"] for r in full_rows] != [r["generated"] for r in base_rows]


def test_lora_adapter_is_applied_merged_or_not(tmp_path, manifest, arc_eval, tiny_qwen3, base_rows):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    # An adapter with non-zero B, so it changes the outputs
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen3)
    torch.manual_seed(2)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "lora")
    merged, merged_info, _ = run(tmp_path, settings("lora", latency_samples=2), manifest, arc_eval,
                                 trained=tmp_path / "lora", name="merged")
    unmerged, unmerged_info, _ = run(tmp_path, settings("lora", latency_samples=2, merge_lora=False), manifest,
                                     arc_eval, trained=tmp_path / "lora", name="unmerged")
    assert merged_info["merge_lora"] is True and unmerged_info["merge_lora"] is False
    assert merged_info["adapter"] == str(tmp_path / "lora")
    assert [r["generated"] for r in merged] == [r["generated"] for r in unmerged]
    assert [r["generated"] for r in merged] != [r["generated"] for r in base_rows]


def test_refuses_pickle_weights_and_missing_folders(tmp_path, arc_eval, tiny_qwen3):
    from ftmatrix.evaluate import evaluate_cell

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_qwen3.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, pickled / f.name)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="pickle"):
        run(tmp_path, settings(), write_manifest(tmp_path / "p.json", pickled), arc_eval)
    good = write_manifest(tmp_path / "g.json", tiny_qwen3)
    with pytest.raises(ModelError, match="trained folder"):
        run(tmp_path, settings("full"), good, arc_eval)
    with pytest.raises(ModelError, match="does not exist"):
        run(tmp_path, settings("full"), good, arc_eval, trained=tmp_path / "nowhere")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="adapter_model.safetensors"):
        run(tmp_path, settings("lora"), good, arc_eval, trained=adapter)
    with pytest.raises(DataError, match=r"bad.json: the model manifest key 'name' is missing.*--force .*bad.json"):
        (tmp_path / "bad.json").write_text("{}")
        evaluate_cell(settings(), tmp_path / "bad.json", None, arc_eval, tmp_path / "o/g.jsonl",
                      tmp_path / "o/g.json", None, 1, progress=False)


def test_bad_eval_files_are_named(tmp_path, manifest):
    rows = [{"id": "a", "prompt": [{"role": "user", "content": "hi"}], "reference": {}}] * 2
    io.write_jsonl(tmp_path / "dup.jsonl", rows)
    with pytest.raises(DataError, match=r"dup.jsonl, row 2.*'a' appears twice"):
        run(tmp_path, settings(), manifest, tmp_path / "dup.jsonl")
    io.write_jsonl(tmp_path / "noprompt.jsonl", [{"id": "a", "prompt": "text", "reference": {}}])
    with pytest.raises(DataError, match=r"noprompt.jsonl, row 1.*'prompt'"):
        run(tmp_path, settings(), manifest, tmp_path / "noprompt.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="no evaluation rows"):
        run(tmp_path, settings(), manifest, tmp_path / "empty.jsonl")
    assert not (tmp_path / "out" / "generations.jsonl").exists()
