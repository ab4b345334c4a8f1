"""An evaluation killed mid-way resumes from the samples already written and ends with the
same generations as an uninterrupted run, without generating the finished samples again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftmatrix import io
from ftmatrix.evaluate import partial_paths
from tests.test_evaluate import arc_eval_rows, settings, write_manifest

pytest.importorskip("torch")

QUALITY_KEYS = ("id", "prompt", "generated", "input_tokens", "output_tokens", "hit_limit")


def evaluate_args(root: Path, manifest: Path, eval_file: Path, out: Path) -> dict:
    return {"settings": settings(batch_size=2, latency_samples=None, warmup=1, max_new_tokens=24),
            "model_manifest": str(manifest), "trained_dir": None, "eval_file": str(eval_file),
            "generations_file": str(out / "generations.jsonl"), "info_file": str(out / "generation.json"),
            "config_hash": "h", "threads": 1}


def evaluate_in_process(args: dict) -> dict:
    from ftmatrix.evaluate import evaluate_cell

    a = dict(args)
    return evaluate_cell(a.pop("settings"), **a, progress=False).to_json()


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.fixture
def case(tmp_path, shared_data, tiny_qwen3, root):
    eval_file = tmp_path / "eval.jsonl"
    io.write_jsonl(eval_file, arc_eval_rows(shared_data, 16))
    manifest = write_manifest(tmp_path / "manifest.json", tiny_qwen3)
    return tmp_path, manifest, eval_file


@pytest.mark.slow
def test_sigkill_mid_evaluation_then_resume_gives_the_same_generations(case, root):
    tmp_path, manifest, eval_file = case
    killed = evaluate_args(root, manifest, eval_file, tmp_path / "killed")
    partial, key_file = partial_paths(killed["generations_file"])

    # A real evaluation in its own process, killed with SIGKILL once a few samples are written.
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from ftmatrix.evaluate import evaluate_cell; "
              "a = json.loads(sys.argv[2]); s = a.pop('settings'); evaluate_cell(s, **a, progress=False)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), json.dumps(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while lines(partial) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not Path(killed["generations_file"]).exists(), "the run finished before it was killed"
    assert key_file.exists()
    written = io.read_jsonl(partial, allow_truncated_tail=True)
    assert 5 <= len(written) < 16
    # A kill in the middle of a write leaves a cut-off last line: the resume must drop it.
    with open(partial, "a", encoding="utf-8") as fh:
        fh.write('{"id": "' + written[0]["id"][:3])

    resumed = evaluate_in_process(killed)
    assert resumed["resumed_samples"] == len(written)
    assert resumed["generated_this_run"] == 16 - len(written)
    final = io.read_jsonl(killed["generations_file"])
    by_id = {r["id"]: r for r in final}
    # Finished samples are carried over as written, timings included: nothing was generated again.
    for row in written:
        assert by_id[row["id"]] == row
    assert not partial.exists() and not key_file.exists()

    straight = evaluate_args(root, manifest, eval_file, tmp_path / "straight")
    uninterrupted = evaluate_in_process(straight)
    assert uninterrupted["resumed_samples"] == 0
    reference = io.read_jsonl(straight["generations_file"])
    assert [{k: r[k] for k in QUALITY_KEYS} for r in final] == [{k: r[k] for k in QUALITY_KEYS} for r in reference]
    assert [r["latency_s"] is not None for r in final] == [True] * 16


def test_a_partial_file_from_other_settings_is_not_reused(case, root):
    tmp_path, manifest, eval_file = case
    args = evaluate_args(root, manifest, eval_file, tmp_path / "out")
    partial, key_file = partial_paths(args["generations_file"])
    partial.parent.mkdir(parents=True)
    ids = [r["id"] for r in io.read_jsonl(eval_file)]
    io.write_jsonl(partial, [{"id": i, "prompt": "p", "generated": "stale", "input_tokens": 1, "output_tokens": 1,
                              "hit_limit": False, "latency_s": None, "ttft_s": None, "tpot_s": None}
                             for i in ids[:6]])
    key_file.write_text("a-key-of-other-settings\n")
    args["settings"]["evaluate"]["latency_samples"] = 0
    summary = evaluate_in_process(args)
    assert summary["resumed_samples"] == 0 and summary["generated_this_run"] == 16
    assert "stale" not in {r["generated"] for r in io.read_jsonl(args["generations_file"])}
