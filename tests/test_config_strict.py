"""Study files that parse but mean something else are refused, with file, line and fix; values
the libraries would reject later are refused at validation (before any job starts)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftmatrix import config as cfg
from ftmatrix.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("study: a\ntrain:\n  epochs: 2\ntrain:\n  max_length: 64\n", "line 4: the key 'train' is written twice"),
    ("lora:\n  ranks: [4, 16]\n  dropout: 0.1\n  ranks: [8]\n", "line 4: the key 'ranks' is written twice"),
    ("lora:\n  ranks: [010]\n", "line 2: 010 is read as an octal number by YAML 1.1 (8)"),
    ("seeds: [0, 007]\n", "007 is read as an octal number"),
    ("train:\n  max_steps: 1:30\n", "1:30 is read as an sexagesimal (base 60) number"),
    ("enable_thinking: yes\n", "line 1: yes is a boolean (true) in YAML 1.1"),
    ("evaluate:\n  merge_lora: Off\n", "Off is a boolean (false)"),
    ("a: &x [1, 2]\nb: *x\n", "line 1: the anchor &x"),
], ids=["duplicate section", "duplicate key", "octal rank", "octal seed", "sexagesimal", "yes", "Off", "alias"])
def test_surprising_yaml_is_refused_with_file_and_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.read_yaml(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_plain_yaml_reads_as_written(tmp_path):
    path = write(tmp_path, "study: x\nseeds: [0, 10]\nenable_thinking: false\nlora: {ranks: [8]}\n"
                           "tasks:\n  - {name: 'yes', kind: arc}\ndescription: '010'\n")
    data = cfg.read_yaml(path)
    assert data["seeds"] == [0, 10] and data["enable_thinking"] is False
    assert data["tasks"][0]["name"] == "yes" and data["description"] == "010"


def test_every_shipped_study_file_reads_strictly():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "studies").glob("*.yaml"))]:
        assert isinstance(cfg.read_yaml(path), dict), path


def snakemake_dry_run(tmp_path, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                           "-n", "--cores", "1", *extra], capture_output=True, text=True, timeout=300, env=env)
    return done, time.monotonic() - started


def test_an_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    bomb = write(tmp_path, "\n".join(lines) + "\n")
    assert bomb.stat().st_size < 600
    done, seconds = snakemake_dry_run(tmp_path, "--configfile", str(bomb))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "take no anchors or aliases" in output and str(bomb) in output
    assert len(output) < 5000 and seconds < 60


def test_a_duplicate_key_in_a_study_file_stops_snakemake_before_any_job(tmp_path):
    study = write(tmp_path, (ROOT / "studies" / "demo.yaml").read_text() + "\ntrain:\n  epochs: 1\n")
    done, _ = snakemake_dry_run(tmp_path, "--configfile", str(study))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "the key 'train' is written twice" in output and "Traceback" not in output
    assert "Job stats" not in output


def test_a_misspelt_local_rule_is_refused(tmp_path):
    done, _ = snakemake_dry_run(tmp_path, "--configfile", str(ROOT / "studies" / "demo.yaml"),
                                "--config", 'local_rules=["prepare_taks"]')
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "local_rules names 'prepare_taks'" in output and "prepare_task" in output
    assert "Job stats" not in output


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.update(seeds=[2 ** 32]), "seeds[0] is 4294967296; it must be ≤ 4294967295"),
    (lambda c: c["data"].update(seed=2 ** 40), "data.seed is 1099511627776; it must be ≤ 4294967295"),
    (lambda c: c["train"].update(lr_scheduler="cosine_annealing"), "train.lr_scheduler is 'cosine_annealing'"),
], ids=["seed", "data seed", "scheduler"])
def test_values_the_libraries_reject_are_refused_at_validation(mutate, expected):
    config = cfg.read_yaml(ROOT / "config.yaml")
    config.setdefault("data", {})
    mutate(config)
    with pytest.raises(ConfigError) as info:
        cfg.validate(config)
    assert expected in str(info.value)


def test_the_schedulers_the_schema_accepts_are_transformers_own():
    from transformers.trainer_utils import SchedulerType

    schema = cfg.load_schema()
    accepted = schema["properties"]["train"]["properties"]["lr_scheduler"]["enum"]
    assert set(accepted) <= {s.value for s in SchedulerType}


def test_a_declared_size_far_from_the_manifest_is_warned_about(tmp_path):
    from ftmatrix.workflow import declared_size_warning

    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")   # not a manifest the pipeline wrote: the jobs report it, the warning stays out
    assert declared_size_warning("m", 405, manifest) is None
    assert declared_size_warning("m", 405, tmp_path / "absent.json") is None


@pytest.mark.parametrize("target, ok", [("all-linear", True), ("(q|v)_proj", True), ("down_proj", True),
                                        ("qkv_proj", False), ("attn.c_attn", False)])
def test_lora_target_modules_are_checked_against_a_built_models_layers(target, ok):
    config = cfg.read_yaml(ROOT / "config.yaml")
    cfg.merge(config, cfg.read_yaml(ROOT / "studies" / "demo.yaml"))
    config["lora"]["target_modules"] = target
    if ok:
        cfg.validate(config)
    else:
        with pytest.raises(ConfigError, match=f"lora.target_modules is '{target}', which matches no linear layer"):
            cfg.validate(config)


def test_lora_target_modules_are_checked_against_a_loaded_model_before_training():
    """A model of another source is checked once loaded: the message lists its linear layers."""
    torch = pytest.importorskip("torch")
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ftmatrix.train import check_target_modules

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    check_target_modules(model, "(q|v)_proj", "models[0]")
    with pytest.raises(ConfigError, match=r"models\[0\]: lora.target_modules is 'c_attn'.*down_proj, gate_proj, "
                                          r"k_proj, o_proj, q_proj, up_proj, v_proj"):
        check_target_modules(model, "c_attn", "models[0]")
