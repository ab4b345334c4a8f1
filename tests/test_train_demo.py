"""The demo study's fine-tuning: full fine-tuning of demo-small, exactly as studies/demo.yaml
configures it, clearly lowers a demo task's held-out loss (OpenMath: the word problems' worked
solutions, whose arithmetic and format transfer to held-out problems)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["openmath"])
def test_demo_full_fine_tuning_clearly_lowers_the_tasks_heldout_loss(demo_run, task):
    """Read from the demo run's own training job (rules/train.smk, as studies/demo.yaml configures it)."""
    import json

    config = demo_run["config"]
    variant = demo_run["root"] / "results" / "demo" / "train" / "demo-small" / "full" / "r0" / task / "seed0"
    # The run its learning-rate selection chose (the one the evaluation uses).
    selection = json.loads((variant / "selection.json").read_text())
    assert len(selection["runs"]) >= 3                      # the demo sweeps OpenMath's rates
    out = variant / f"lr{selection['selected']}"
    metrics = json.loads((out / "train_metrics.json").read_text())
    before, after = metrics["heldout_loss_before"], metrics["heldout_loss_after"]
    assert after < 0.75 * before, (before, after)
    assert metrics["epochs"] == pytest.approx(config["train"]["epochs"])
    assert metrics["truncated_examples"] == 0 and metrics["dropped_examples"] == 0
    assert (out / "model" / "model.safetensors").is_file()
