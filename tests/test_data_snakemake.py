"""The data rule through Snakemake: the real-data study's three tasks prepared in a fresh folder."""

import json
import os
import subprocess
import sys

from ftmatrix import io

TASKS = ("arc", "openmath", "squad_v2")


def test_prepare_real_tasks_through_snakemake(root, shared_data, tmp_path):
    targets = [f"data/real-data/tasks/{task}/meta.json" for task in TASKS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
               "--cores", "2", *targets, "--configfile", str(root / "studies" / "real-data.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = {"arc": (32, 16), "openmath": (32, 16), "squad_v2": (32, 16)}
    for task in TASKS:
        folder = tmp_path / "data" / "real-data" / "tasks" / task
        meta = json.loads((folder / "meta.json").read_text())
        train, evaluation = io.read_jsonl(folder / "train.jsonl"), io.read_jsonl(folder / "eval.jsonl")
        assert (len(train), len(evaluation)) == study[task]
        assert meta["counts"]["train"]["written"] == len(train)
        assert not {r["id"] for r in train} & {r["id"] for r in evaluation}
        assert meta["source"]["type"] == "local" and meta["licence"].startswith("CC BY")
        assert (tmp_path / "logs" / "real-data" / "data" / f"prepare_task_{task}.log").is_file()
    assert json.loads((tmp_path / "data/real-data/tasks/arc/meta.json").read_text())["split"]["method"] == "given"
    assert json.loads((tmp_path / "data/real-data/tasks/openmath/meta.json").read_text())["split"]["method"] == "carved"
