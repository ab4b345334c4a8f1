"""Results you can trust after an accident, through the real Snakemake on a small study in a
copy of the project: a linked model folder whose weights are replaced reruns what used it;
weights with NaN are refused before any job uses them; files changed by hand after the
pipeline wrote them are refused with the command that writes them again; moving the project
folder reruns nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_project
from tests.helpers import make_tiny_qwen3

pytestmark = pytest.mark.slow

STUDY = """\
study: trust
description: A base model linked from a local folder, evaluated on one small demo task.
methods: [base]
models:
  - {name: local-tiny, source: local, path: local-models/tiny, params_b: 0.0001, finetune: false}
tasks:
  - {name: arc, kind: arc, source: {type: demo, seed: 0}, train_size: 16, eval_size: 6, valid_size: 4,
     max_new_tokens: 4, licence: "synthetic; mirror https://bob:hunter2pass@mirror.example/arc, token ghp_PlantedGithubToken0123456789abcdef"}
evaluate: {batch_size: 6, latency_samples: 0}
"""


def snakemake(project: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args,
                           "--configfile", "studies/trust.yaml"], cwd=project, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    text = done.stdout + done.stderr
    if check:
        assert done.returncode == 0, text[-5000:]
    return text


def planned(project: Path, *targets: str) -> set[str]:
    text = snakemake(project, "-n", *targets)
    if "Nothing to be done" in text:
        return set()
    table = text[text.index("Job stats"):]
    return {line.split()[0] for line in table.splitlines()[3:] if len(line.split()) == 2
            and line.split()[1].isdigit() and line.split()[0] != "total"}


@pytest.fixture(scope="module")
def study(tmp_path_factory, qwen_tokenizer_dir):
    """The small study run once to its matrix and figures in a copy of the project."""
    project = copy_project(tmp_path_factory.mktemp("trust") / "project")
    (project / "studies" / "trust.yaml").write_text(STUDY)
    make_tiny_qwen3(project / "local-models" / "tiny", qwen_tokenizer_dir, seed=0)
    snakemake(project, "matrix", "analysis")
    return project


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory, qwen_tokenizer_dir) -> Path:
    """Another model of the same shape (another seed): the same file size, other weights."""
    return make_tiny_qwen3(tmp_path_factory.mktemp("other") / "tiny", qwen_tokenizer_dir, seed=1) / "model.safetensors"


def test_secrets_in_the_study_reach_no_file_it_writes(study):
    """A URL password and a GitHub token in a study value that shapes a rule's output (a task's
    licence): masked in the params Snakemake stores (.snakemake/metadata) and in every output."""
    found = []
    for folder in (".snakemake", "data", "results", "logs"):
        for path in (study / folder).rglob("*"):
            if path.is_file() and not path.suffix == ".safetensors":
                text = path.read_bytes()
                if b"hunter2pass" in text or b"ghp_PlantedGithubToken" in text:
                    found.append(str(path.relative_to(study)))
    assert not found
    meta = json.loads((study / "data/trust/tasks/arc/meta.json").read_text())
    assert meta["licence"] == "synthetic; mirror https://bob:***@mirror.example/arc, token gh*_***"
    assert any((study / ".snakemake" / "metadata").iterdir())


def copy_of(study: Path, tmp_path: Path) -> Path:
    """The finished study, copied with its outputs and Snakemake's records (modification times kept)."""
    return Path(shutil.copytree(study, tmp_path / "project", symlinks=True))


CELL = Path("results/trust/eval/local-tiny/base/r0/none/seed0/arc")


def test_replacing_a_linked_folders_weights_reruns_the_link_and_every_cell(study, other_weights, tmp_path):
    project = copy_of(study, tmp_path)
    assert planned(project, "matrix") == set()
    manifest = json.loads((project / "data/trust/models/local-tiny/manifest.json").read_text())
    weights = project / "local-models" / "tiny" / "model.safetensors"
    # Another model's weights, of the same size, copied in with an OLDER modification time
    # (as cp -p or rsync -a leave it): Snakemake's own mtime check would see nothing.
    assert other_weights.stat().st_size == weights.stat().st_size
    old = weights.stat().st_mtime - 3600
    shutil.copyfile(other_weights, weights)
    os.utime(weights, (old, old))
    assert {"link_model", "evaluate_cell", "score_cell", "aggregate_matrix"} <= planned(project, "matrix")
    snakemake(project, "matrix")
    relinked = json.loads((project / "data/trust/models/local-tiny/manifest.json").read_text())
    assert relinked["files_sha256"]["model.safetensors"] != manifest["files_sha256"]["model.safetensors"]
    assert relinked["resolved_revision"] != manifest["resolved_revision"]
    generation = json.loads((project / CELL / "generation.json").read_text())
    assert generation["model"]["resolved_revision"] == relinked["resolved_revision"]


def test_nan_weights_are_refused_before_any_job_uses_them(study, tmp_path):
    from safetensors.torch import load_file, save_file

    project = copy_of(study, tmp_path)
    weights = project / "local-models" / "tiny" / "model.safetensors"
    tensors = load_file(weights)
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name][0, :4] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    text = snakemake(project, "matrix", check=False)
    assert f"holds NaN or infinite weights: {name} (4 values)" in text
    assert "Traceback" not in text
    log = (project / "logs/trust/models/link_model_local-tiny.log").read_text()
    assert name in log
    assert not (project / "data/trust/models/local-tiny/manifest.json").exists()
    assert "rule evaluate_cell" not in text


def test_a_hand_edited_matrix_is_refused_naming_the_command(study, tmp_path):
    project = copy_of(study, tmp_path)
    matrix = project / "results/trust/matrix.csv"
    lines = matrix.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("headline")] = "99.0"
    matrix.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    text = snakemake(project, "analysis", check=False)
    assert "results/trust/matrix.csv: changed since results/trust/matrix.json was written from it" in text
    assert "snakemake --cores all --forcerun aggregate_matrix --configfile studies/trust.yaml" in text
    assert "Traceback" not in text
    # The command it names repairs it.
    snakemake(project, "--forcerun", "aggregate_matrix", "analysis")


def test_a_hand_edited_metrics_file_is_refused_naming_the_command(study, tmp_path):
    project = copy_of(study, tmp_path)
    metrics = project / CELL / "metrics.json"
    data = json.loads(metrics.read_text())
    data["headline"]["value"] = 99.0                  # still valid JSON, still a valid record
    metrics.write_text(json.dumps(data, indent=2))
    text = snakemake(project, "matrix", check=False)
    assert f"{CELL}/metrics.json: changed since the pipeline wrote it" in text
    assert f"snakemake --cores all --forcerun score_cell {CELL}/metrics.json --configfile studies/trust.yaml" in text


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_broken_generations_file_names_the_command_that_regenerates_the_cell(study, tmp_path, damage):
    project = copy_of(study, tmp_path)
    generations = project / CELL / "generations.jsonl"
    raw = generations.read_bytes()
    if damage == "truncate":
        generations.write_bytes(raw[: len(raw) // 2])
    else:
        first = json.loads(raw.split(b"\n")[0])
        first["generated"] = "B"
        generations.write_bytes(json.dumps(first).encode() + b"\n" + b"\n".join(raw.split(b"\n")[1:]))
    text = snakemake(project, "matrix", check=False)
    command = (f"snakemake --cores all --forcerun evaluate_cell {CELL}/generations.jsonl "
               f"--configfile studies/trust.yaml")
    assert command in text
    assert "Traceback" not in text
    snakemake(project, *command.split()[3:6], "matrix")          # regenerates that one cell


def test_moving_the_project_folder_reruns_nothing(study, tmp_path):
    project = copy_of(study, tmp_path)
    moved = project.parent / "moved-elsewhere"
    project.rename(moved)
    assert planned(moved, "matrix", "analysis") == set()


def test_results_being_a_file_is_a_clear_message(study, tmp_path):
    project = copy_of(study, tmp_path)
    shutil.rmtree(project / "results")
    (project / "results").write_text("not a folder\n")
    text = snakemake(project, "-n", "matrix", check=False)
    assert "results is a file, but the study writes into a folder of that name" in text
    assert "Traceback" not in text
