"""Model folders verified at manifest time: every file hashed, non-finite weights refused, the
architecture checked against the weights (tensors named), the load report in the job's log."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from ftmatrix.errors import ModelError
from ftmatrix.models import folder_signature, link_model, load_causal_lm
from ftmatrix.workflow import setup_logging


def linked(folder: Path, tmp_path: Path, name: str = "m"):
    cfg = {"name": name, "source": "local", "path": str(folder), "trust_remote_code": False}
    return link_model(cfg, tmp_path / "manifest-dir", root=tmp_path)


def copy(tiny_qwen3: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(tiny_qwen3, tmp_path / name))


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def set_values(folder: Path, name: str, value: float, count: int = 4) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors[name].view(-1)[:count] = value
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_the_manifest_holds_the_sha256_of_every_file_and_the_class_that_loads(tiny_qwen3, tmp_path):
    manifest = linked(tiny_qwen3, tmp_path)
    assert set(manifest.files_sha256) >= {"model.safetensors", "config.json", "tokenizer_config.json"}
    assert all(len(h) == 64 for h in manifest.files_sha256.values())
    assert manifest.model_class == "Qwen3ForCausalLM"


def test_weights_changed_inside_the_file_change_the_fingerprint(tiny_qwen3, tmp_path):
    """Same size, same header, other values (the old fingerprint read only the header)."""
    before = linked(tiny_qwen3, tmp_path)
    folder = copy(tiny_qwen3, tmp_path)
    size = (folder / "model.safetensors").stat().st_size
    set_values(folder, "model.layers.0.mlp.up_proj.weight", 0.5)
    assert (folder / "model.safetensors").stat().st_size == size
    after = linked(folder, tmp_path)
    assert after.files_sha256["model.safetensors"] != before.files_sha256["model.safetensors"]
    assert after.resolved_revision != before.resolved_revision


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tiny_qwen3, tmp_path, value):
    folder = copy(tiny_qwen3, tmp_path)
    set_values(folder, "model.layers.1.self_attn.o_proj.weight", value, count=3)
    with pytest.raises(ModelError, match=r"models\[m\]\.path: .*model\.safetensors holds NaN or infinite weights: "
                                         r"model\.layers\.1\.self_attn\.o_proj\.weight \(3 values\)"):
        linked(folder, tmp_path)
    assert not (tmp_path / "manifest-dir" / "manifest.json").exists()


def test_nonfinite_check_reads_bf16_and_fp16_files(tmp_path):
    import torch
    from safetensors.torch import save_file

    from ftmatrix.models import nonfinite_tensors

    good = torch.ones(8, 8)
    bad = torch.ones(8, 8)
    bad[2, 3] = float("nan")
    bad[5, 5] = float("inf")
    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        path = tmp_path / f"{dtype}.safetensors"
        save_file({"a.good": good.to(dtype), "b.bad": bad.to(dtype), "c.int": torch.arange(4)}, path)
        assert nonfinite_tensors(path) == [("b.bad", 2)], dtype


def test_a_config_of_another_family_is_refused_naming_the_tensors(tiny_qwen3, tmp_path):
    """model_type bert on Qwen3 weights loaded as a randomly initialised BERT and generated noise."""
    folder = copy(tiny_qwen3, tmp_path)
    edit_config(folder, model_type="bert", architectures=["BertForMaskedLM"])
    with pytest.raises(ModelError) as caught:
        linked(folder, tmp_path)
    message = str(caught.value)
    assert "do not fit the architecture" in message
    assert "missing: bert.embeddings" in message and "unexpected: model.embed_tokens.weight" in message


def test_a_related_family_that_would_drop_tensors_is_refused_naming_them(tiny_qwen3, tmp_path):
    """model_type qwen2 on Qwen3 weights silently dropped q_norm / k_norm."""
    folder = copy(tiny_qwen3, tmp_path)
    edit_config(folder, model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    with pytest.raises(ModelError, match=r"unexpected: model\.layers\.0\.self_attn\.k_norm\.weight, "
                                         r"model\.layers\.0\.self_attn\.q_norm\.weight"):
        linked(folder, tmp_path)


def test_a_missing_tensor_is_refused_when_a_job_loads_the_weights(tiny_qwen3, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy(tiny_qwen3, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.norm.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"missing: model\.norm\.weight"):
        load_causal_lm(folder, where="results/x/model")


def test_the_load_report_goes_to_the_job_log(tiny_qwen3, tmp_path):
    log_file = tmp_path / "job.log"
    setup_logging(str(log_file))
    try:
        load_causal_lm(tiny_qwen3, where="data/m/manifest.json")
    finally:
        logging.getLogger().handlers.clear()
    text = log_file.read_text()
    assert f"loaded {tiny_qwen3} as Qwen3ForCausalLM; missing: none; unexpected: none; mismatched: none" in text


def test_the_folder_signature_changes_with_a_copy_that_keeps_an_older_time(tiny_qwen3, tmp_path):
    folder = copy(tiny_qwen3, tmp_path)
    before = folder_signature(folder)
    assert folder_signature(folder) == before                    # stat only, stable
    weights = folder / "model.safetensors"
    stat = weights.stat()
    set_values(folder, "model.norm.weight", 2.0)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**12))   # older than before
    assert weights.stat().st_size == stat.st_size
    assert folder_signature(folder) != before
    (folder / "extra.safetensors").write_bytes(b"")
    assert "extra.safetensors" in [name for name, *_ in folder_signature(folder)]
    assert folder_signature(tmp_path / "absent") is None
