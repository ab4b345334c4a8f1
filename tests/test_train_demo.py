"""The demo study's fine-tuning: on each demo task, full fine-tuning of demo-small (as configured in
studies/demo.yaml) clearly lowers that task's held-out loss."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo world and demo-small, built by the project's own code as the data stage does."""
    from ftmatrix import config as study_config
    from ftmatrix.demo_world import write_world
    from ftmatrix.models import build_model

    config = study_config.load(ROOT / "config.yaml", [ROOT / "studies" / "demo.yaml"])
    base = tmp_path_factory.mktemp("demo")
    world = base / "data" / "demo" / "seed0" / "world.json"
    write_world(world.parent, seed=0)
    model = study_config.model_entry(config, "demo-small")
    build_model(model, base / "data" / "models" / "demo-small", corpus=world, threads=1, root=ROOT)
    return config, base


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arc", "openmath", "squad_v2"])
def test_demo_full_fine_tuning_clearly_lowers_the_tasks_heldout_loss(demo, task):
    from ftmatrix import config as study_config
    from ftmatrix.data import prepare_task
    from ftmatrix.grid import Variant
    from ftmatrix.train import train_variant

    config, base = demo
    task_dir = base / "data" / "tasks" / task
    prepare_task(study_config.task_entry(config, task), task_dir, data_seed=config["data"]["seed"], root=ROOT,
                 demo_dir=base / "data" / "demo")
    variant = Variant("demo-small", "full", 0, task, 0)
    # What rules/train.smk's train_settings() passes for this variant.
    settings = {"variant": variant.path, "model": study_config.model_entry(config, "demo-small"),
                "method": "full", "rank": 0, "seed": 0, "train": config["train"],
                "lora": {k: v for k, v in config["lora"].items() if k != "ranks"},
                "enable_thinking": config["enable_thinking"]}
    out = base / "results" / "train" / variant.path
    metrics = train_variant(settings, str(base / "data" / "models" / "demo-small" / "manifest.json"),
                            str(task_dir / "train.jsonl"), str(task_dir / "eval.jsonl"), str(out / "model"),
                            str(out / "train_metrics.json"), str(out / "checkpoints"), config_hash="demo",
                            threads=1)
    before, after = metrics["heldout_loss_before"], metrics["heldout_loss_after"]
    assert after < 0.75 * before, (before, after)
    assert metrics["epochs"] == pytest.approx(config["train"]["epochs"])
    assert metrics["truncated_examples"] == 0 and metrics["dropped_examples"] == 0
    assert (out / "model" / "model.safetensors").is_file()
