"""The study configuration: the reference study, the demo merge, defaults, and bad input."""

import copy
import subprocess
import sys

import pytest
import yaml

from ftmatrix import config as cfg
from ftmatrix.errors import ConfigError

ROOT = cfg.PROJECT_ROOT


def reference() -> dict:
    return cfg.read_yaml(ROOT / "config.yaml")


def test_reference_study_is_valid_and_filled():
    config = cfg.load(ROOT / "config.yaml")
    assert [m["name"] for m in config["models"]] == ["qwen3-0.6b", "qwen3-1.7b"]
    assert [m["id"] for m in config["models"]] == ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B"]
    assert all(m["revision"] for m in config["models"])
    assert [t["name"] for t in config["tasks"]] == ["arc", "openmath", "squad_v2"]
    assert config["lora"]["ranks"] == [32, 64, 128, 256, 512, 1024]
    assert config["methods"] == ["base", "full", "lora"]
    assert config["enable_thinking"] is False
    # defaults filled from the schema
    assert config["models"][0]["trust_remote_code"] is False
    assert config["train"]["report_to"] == "none"
    assert config["evaluate"]["bootstrap_resamples"] >= 1000
    assert config["data"]["seed"] == 0


def test_demo_study_replaces_models_and_tasks_wholesale():
    """--configfile studies/demo.yaml yields exactly the demo's models and tasks (lists replace)."""
    demo = cfg.read_yaml(ROOT / "studies" / "demo.yaml")
    merged = cfg.load(ROOT / "config.yaml", [ROOT / "studies" / "demo.yaml"])
    assert [m["name"] for m in merged["models"]] == [m["name"] for m in demo["models"]]
    assert [t["name"] for t in merged["tasks"]] == [t["name"] for t in demo["tasks"]]
    assert not [m for m in merged["models"] if m["source"] == "hub"]   # built here, or served by the demo itself
    assert all(t["source"]["type"] == "demo" for t in merged["tasks"])
    assert merged["lora"]["ranks"] == demo["lora"]["ranks"]
    # dict sections merge key by key: unset keys keep the reference study's values
    assert merged["lora"]["alpha"] == demo["lora"]["alpha"]
    assert "dropout" not in demo["lora"] and merged["lora"]["dropout"] == reference()["lora"]["dropout"]


def test_snakemake_sees_exactly_the_demo_models_and_tasks(tmp_path):
    """Snakemake's own deep merge of --configfile gives the demo's jobs, not the reference's."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
         "-n", "--cores", "1", "data", "--configfile", str(ROOT / "studies" / "demo.yaml")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "build_model" in text and "download_model" not in text
    assert "data/demo/models/demo-small/manifest.json" in text
    assert "qwen3" not in text.lower().replace("qwen3 architecture", "")


def test_defaults_do_not_leak_between_calls():
    a = cfg.validate(reference())
    a["train"]["epochs"] = 99
    b = cfg.validate(reference())
    assert b["train"]["epochs"] == 1


def test_config_hash_is_stable_and_sensitive():
    a = cfg.config_hash(cfg.load(ROOT / "config.yaml"))
    assert a == cfg.config_hash(cfg.load(ROOT / "config.yaml"))
    changed = reference()
    changed["train"]["epochs"] = 2
    assert cfg.config_hash(cfg.validate(changed)) != a


# Each case: (description, mutation of the reference config, text the message must contain).
def _set(path, value):
    def mutate(c):
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(c):
        node = c
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _apply(*mutations):
    def mutate(c):
        for m in mutations:
            m(c)
    return mutate


def _dup(section):
    def mutate(c):
        c[section].append(copy.deepcopy(c[section][0]))
    return mutate


BAD = [
    ("unknown top-level key", _set(["learning_rate"], 1e-4), "unknown key 'learning_rate' at the top level"),
    ("unknown model key", _set(["models", 0, "revison"], "abc"), "unknown key 'revison' in models[0]"),
    ("unknown task key", _set(["tasks", 1, "size"], 3), "unknown key 'size' in tasks[1]"),
    ("unknown train key", _set(["train", "lr"], 1e-3), "unknown key 'lr' in train"),
    ("empty model list", _set(["models"], []), "models is empty"),
    ("empty task list", _set(["tasks"], []), "tasks is empty"),
    ("models as a dict", _set(["models"], {"qwen": {"source": "hub"}}), "models must be of type array"),
    ("model without name", _delete(["models", 0, "name"]), "models[0] is missing the key 'name'"),
    ("model without source", _delete(["models", 0, "source"]), "models[0] is missing the key 'source'"),
    ("hub model without revision", _delete(["models", 1, "revision"]), "models[1] is missing the key 'revision'"),
    ("hub model without id", _delete(["models", 0, "id"]), "models[0] is missing the key 'id'"),
    ("local model without path", _set(["models", 0, "source"], "local"), "models[0] is missing the key 'path'"),
    ("build model without build", _set(["models", 0, "source"], "build"), "models[0] is missing the key 'build'"),
    ("unknown model source", _set(["models", 0, "source"], "s3"), "models[0].source is 's3'; it must be one of"),
    ("name with a slash", _set(["models", 0, "name"], "Qwen/Qwen3"), "models[0].name is 'Qwen/Qwen3', which is not a safe name"),
    ("name escaping the folder", _set(["tasks", 0, "name"], "../../etc"), "tasks[0].name is '../../etc', which is not a safe name"),
    ("upper-case name", _set(["models", 0, "name"], "Qwen3"), "models[0].name is 'Qwen3', which is not a safe name"),
    ("reserved name", _set(["tasks", 0, "name"], "none"), "tasks[0].name is 'none', which is not a safe name"),
    ("too long a name", _set(["models", 0, "name"], "m" * 70), "which is not a safe name"),
    ("empty name", _set(["models", 0, "name"], ""), "models[0].name is '', which is not a safe name"),
    ("duplicate model names", _dup("models"), "models: the name 'qwen3-0.6b' is used by entries [0, 2]"),
    ("duplicate task names", _dup("tasks"), "tasks: the name 'arc' is used by entries [0, 3]"),
    ("rank zero", _set(["lora", "ranks"], [0, 8]), "lora.ranks[0] is 0; it must be ≥ 1"),
    ("negative rank", _set(["lora", "ranks"], [8, -4]), "lora.ranks[1] is -4; it must be ≥ 1"),
    ("rank as text", _set(["lora", "ranks"], ["32"]), "lora.ranks[0] must be of type integer"),
    ("no ranks", _set(["lora", "ranks"], []), "lora.ranks is empty"),
    ("duplicate ranks", _set(["lora", "ranks"], [8, 8]), "lora.ranks lists the same value twice"),
    ("unknown task kind", _set(["tasks", 0, "kind"], "mmlu"), "tasks[0].kind is 'mmlu', which no task module declares; known kinds: "),
    ("task kind not a safe name", _set(["tasks", 0, "kind"], "MMLU Pro"), "tasks[0].kind is 'MMLU Pro', which is not a safe name"),
    ("task modules folder missing", _set(["task_modules"], ["no/such/folder"]), "task_modules[0] is "),
    ("unknown data source type", _set(["tasks", 0, "source"], {"type": "s3"}), "tasks[0].source.type is 's3'"),
    ("hub dataset without revision", _delete(["tasks", 2, "source", "revision"]), "tasks[2].source is missing the key 'revision'"),
    ("local data without format", _set(["tasks", 0, "source"], {"type": "local", "train": "a.jsonl"}), "tasks[0].source is missing the key 'format'"),
    ("local data in an unknown format", _set(["tasks", 0, "source"], {"type": "local", "format": "csv", "train": "a.csv"}), "tasks[0].source.format is 'csv'"),
    ("train_size zero", _set(["tasks", 0, "train_size"], 0), "tasks[0].train_size is 0; it must be ≥ 1"),
    ("max_new_tokens as text", _set(["tasks", 0, "max_new_tokens"], "16"), "tasks[0].max_new_tokens must be of type integer"),
    ("negative learning rate", _set(["train", "learning_rate", "lora"], -1e-4), "train.learning_rate.lora is -0.0001; it must be >"),
    ("epochs as text", _set(["train", "epochs"], "one"), "train.epochs must be of type number"),
    ("unknown method", _set(["methods"], ["base", "qlora"]), "methods[1] is 'qlora'; it must be one of: base, full, lora"),
    ("duplicate methods", _set(["methods"], ["base", "base"]), "methods lists the same value twice"),
    ("negative seed", _set(["seeds"], [-1]), "seeds[0] is -1; it must be ≥ 0"),
    ("thinking as text", _set(["enable_thinking"], "yes"), "enable_thinking must be of type boolean"),
    ("base-only model without the base method", _set(["methods"], ["full", "lora"]), "models[1] (qwen3-1.7b) is base-only"),
    ("fine-tuning with no fine-tunable model", _set(["models", 0, "finetune"], False), "no model has finetune: true"),
    ("confidence above 1", _set(["evaluate", "confidence"], 1.5), "evaluate.confidence is 1.5; it must be <"),
    ("too few bootstrap resamples", _set(["evaluate", "bootstrap_resamples"], 10), "evaluate.bootstrap_resamples is 10; it must be ≥ 1000"),
    ("negative price", _set(["cost", "gpu_hour_usd"], -2), "cost.gpu_hour_usd is -2; it must be ≥ 0"),
    ("finetune as text", _set(["models", 0, "finetune"], "true"), "models[0].finetune must be of type boolean"),
    ("heads not a multiple of kv heads", _apply(
        _set(["models", 0, "source"], "build"),
        _set(["models", 0, "build"], {"num_attention_heads": 6, "num_key_value_heads": 4})),
        "models[0].build.num_attention_heads (6) must be a multiple of num_key_value_heads (4)"),
    ("tokenizer path missing", _apply(
        _set(["models", 0, "source"], "build"),
        _set(["models", 0, "build"], {"tokenizer": {"source": "path"}})),
        "models[0].build.tokenizer has source: path but no path"),
    ("latency samples negative", _set(["evaluate", "latency_samples"], -5), "evaluate.latency_samples is -5; it must be ≥ 0"),
    ("unknown timing engine", _set(["evaluate", "timing_engine"], "tgi"), "evaluate.timing_engine is 'tgi'"),
    ("rank 1024 unmerged through vLLM", _apply(
        _set(["evaluate", "engine"], "vllm"), _set(["evaluate", "merge_lora"], False)),
        "lora.ranks has 1024, above the largest rank vLLM's LoRA support takes (512)"),
    ("rank 1024 unmerged, timed by vLLM", _apply(
        _set(["evaluate", "timing_engine"], "vllm"), _set(["evaluate", "merge_lora"], False)),
        "set evaluate.merge_lora: true"),
]


def test_unmerged_adapters_through_vllm_are_fine_within_its_ranks():
    config = reference()
    config["evaluate"].update(engine="vllm", merge_lora=False)
    config["lora"]["ranks"] = [32, 512]
    cfg.validate(config)
    config["lora"]["ranks"] = [32, 1024]
    config["evaluate"]["merge_lora"] = True       # merged first: any rank
    cfg.validate(config)


@pytest.mark.parametrize("description,mutate,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config_gets_one_clear_message(description, mutate, expected):
    config = reference()
    mutate(config)
    with pytest.raises(ConfigError) as info:
        cfg.validate(config)
    message = str(info.value)
    assert expected in message, message
    assert "Traceback" not in message


def test_at_least_thirty_malformed_configs_are_tried():
    assert len(BAD) >= 30


@pytest.mark.parametrize("text,expected", [
    ("models: [\n", "not valid YAML"),
    ("", "the file is empty"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_unreadable_study_files(tmp_path, text, expected):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        cfg.load(ROOT / "config.yaml", [path])


SNAKEMAKE_BAD = [
    ("unknown key", {"learning_rate": 0.1}, "unknown key 'learning_rate'"),
    ("rank zero", {"lora": {"ranks": [0]}}, "lora.ranks[0] is 0"),
    ("unsafe name", {"tasks": [{"name": "../x", "kind": "arc", "source": {"type": "demo"}}]}, "tasks[0].name is '../x'"),
    ("empty models", {"models": []}, "models is empty"),
    ("unknown kind", {"tasks": [{"name": "x", "kind": "mmlu", "source": {"type": "demo"}}]}, "tasks[0].kind is 'mmlu'"),
]


@pytest.mark.parametrize("description,study,expected", SNAKEMAKE_BAD, ids=[b[0] for b in SNAKEMAKE_BAD])
def test_snakemake_stops_before_any_job_with_the_message(tmp_path, description, study, expected):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "work"),
         "-n", "--cores", "1", "--configfile", str(path)],
        capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert "Building DAG" not in out.stdout + out.stderr
