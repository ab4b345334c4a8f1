"""A training job killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_train_support import (build_small_model, corpus_of, job_paths, settings_for, short_examples,
                                      squad_examples, write_task)

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

# Runs one training job the way workflow_scripts/train_variant.py does. A callback writes the
# step reached and waits a little after each step, so the test can kill it at a chosen step.
RUNNER = """
import json, sys, time
from pathlib import Path
from transformers import TrainerCallback
from ftmatrix.train import train_variant
from ftmatrix.workflow import run_step

spec = json.loads(Path(sys.argv[1]).read_text())

class Pace(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        Path(spec["progress"]).write_text(str(state.global_step))
        time.sleep(spec["pause_s"])

with run_step(name="train_variant"):
    train_variant(**spec["job"], callbacks=[Pace()])
"""

MAX_STEPS, SAVE_STEPS = 24, 4


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    examples = squad_examples(shared_data)
    base = tmp_path_factory.mktemp("resume")
    manifest = build_small_model(base / "model", corpus_of(examples[:600]))
    rows = short_examples(examples, 40)
    train_file, eval_file = write_task(base / "task", rows[:32], rows[32:40])
    return manifest, train_file, eval_file


def job(root: Path, settings: dict, setup) -> dict:
    manifest, train_file, eval_file = setup
    return {"settings": settings, "model_manifest": str(manifest), "train_file": str(train_file),
            "heldout_file": str(eval_file), "config_hash": "test", "threads": 1, **job_paths(root, settings)}


def start(root: Path, spec_job: dict, pause_s: float) -> tuple[subprocess.Popen, Path]:
    progress = root / "progress.txt"
    spec = root / "spec.json"
    spec.write_text(json.dumps({"job": spec_job, "progress": str(progress), "pause_s": pause_s}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(spec)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, progress


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    assert files, f"no weights in {model_dir}"
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(f).items()}


@pytest.mark.slow
@pytest.mark.parametrize("method,rank", [("full", 0), ("lora", 4)])
def test_sigkilled_training_resumes_from_its_checkpoint_and_ends_with_the_same_weights(setup, tmp_path, method,
                                                                                         rank):
    from ftmatrix.train import train_variant

    settings = settings_for(method, rank, train={"max_steps": MAX_STEPS, "save_steps": SAVE_STEPS,
                                                 "save_total_limit": 2, "logging_steps": 2})

    # Uninterrupted reference, in this process.
    reference = train_variant(**job(tmp_path / "reference", settings, setup)).to_json()

    # The same job in a subprocess, killed with SIGKILL at a random step after a checkpoint.
    root = tmp_path / "killed"
    root.mkdir()
    spec = job(root, settings, setup)
    paths = {k: Path(v) for k, v in job_paths(root, settings).items()}
    kill_at = random.Random(f"{method}-{rank}").randint(SAVE_STEPS + 1, MAX_STEPS - 2)
    proc, progress = start(root, spec, pause_s=0.3)
    deadline = time.monotonic() + 300
    while True:
        step = int(progress.read_text() or 0) if progress.exists() else 0
        if step >= kill_at:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {kill_at}:\n{proc.stdout.read()}")
        assert time.monotonic() < deadline, "training did not reach the kill step in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Nothing complete-looking is left behind; the checkpoints are.
    assert not paths["output_dir"].exists() and not paths["metrics_file"].exists()
    checkpoints = sorted(paths["checkpoint_dir"].glob("checkpoint-*"))
    assert checkpoints, "no checkpoint was written before the kill"

    # Started again (as Snakemake would rerun the job): resumes and finishes.
    proc, _ = start(root, spec, pause_s=0.0)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "resuming from" in output
    metrics = json.loads(paths["metrics_file"].read_text())
    last_saved = (kill_at // SAVE_STEPS) * SAVE_STEPS
    assert metrics["resumed_from_step"] == last_saved
    assert metrics["steps"] == reference["steps"] == MAX_STEPS
    assert not paths["checkpoint_dir"].exists()  # dropped once the model is in place

    got, expected = weights(paths["output_dir"]), weights(Path(job_paths(tmp_path / "reference", settings)
                                                                ["output_dir"]))
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert metrics["heldout_loss_after"] == reference["heldout_loss_after"]
    assert [s for s, _ in metrics["loss_curve"]] == [s for s, _ in reference["loss_curve"]]


def test_checkpoints_of_other_settings_are_not_resumed(setup, tmp_path):
    from ftmatrix.train import train_variant

    settings = settings_for(train={"max_steps": 8, "save_steps": 2})
    paths = job_paths(tmp_path, settings)
    stale = Path(paths["checkpoint_dir"]) / "checkpoint-6"
    stale.mkdir(parents=True)
    (Path(paths["checkpoint_dir"]) / "run.json").write_text(json.dumps({"resume_key": "another job"}))
    metrics = train_variant(**job(tmp_path, settings, setup)).to_json()
    assert metrics["resumed_from_step"] is None and metrics["steps"] == 8


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(setup, tmp_path):
    """Killed while saving: the newest checkpoint lacks its trainer state; the one before is used."""
    from ftmatrix.train import resumable_checkpoint

    folder = tmp_path / "checkpoints"
    run = {"resume_key": "k"}
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(run))
    for step, complete in ((4, True), (8, True), (12, False)):
        ckpt = folder / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_bytes(b"x")
        (ckpt / "optimizer.pt").write_bytes(b"x")
        (ckpt / "scheduler.pt").write_bytes(b"x")
        (ckpt / "trainer_state.json").write_text('{"global_step": %d}' % step if complete else '{"global_')
    assert resumable_checkpoint(folder, run) == folder / "checkpoint-8"
    assert not (folder / "checkpoint-12").exists()
