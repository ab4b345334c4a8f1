"""Reproducible and fault-tolerant, end to end through Snakemake on a small study.

- two runs from a clean state give byte-identical quality columns in results/<study>/matrix.csv;
- the Snakemake process itself killed mid-study: the next run finishes the incomplete jobs,
  never takes a partial output for a complete one, and ends with the same quality columns;
- a Hugging Face token planted in the environment appears in no file the study writes;
- a full disk or a read-only results folder fails with a clear message and leaves nothing
  half-written that looks complete.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftmatrix.aggregate import quality_columns
from ftmatrix.errors import FtmatrixError

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "slurm-test.yaml"
PLANTED_TOKEN = "hf_PlantedTokenForLeakCheck0123456789"
TIMEOUT_S = 1200


def snakemake_command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--cores", "2", "results/slurm-test/matrix.csv", *extra, "--configfile", str(STUDY)]


def study_env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def run_study(workdir: Path, **env) -> subprocess.CompletedProcess:
    done = subprocess.run(snakemake_command(workdir), capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=study_env(**env))
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return done


# Inputs that must match too; the git commit is left out, since the code under test may be
# committed between the two runs.
SAME_INPUTS = ("config_hash", "eval_data_fingerprint", "train_data_fingerprint", "model_revision")


def quality_table(matrix: Path) -> list[list[str]]:
    """The matrix's identity, quality and token columns and its input fingerprints, as text cells
    (a byte-level comparison; timing columns excluded)."""
    rows = list(csv.reader(io.StringIO(matrix.read_text(encoding="utf-8"))))
    header = rows[0]
    wanted = set(quality_columns(header)) | set(SAME_INPUTS)
    keep = [i for i, name in enumerate(header) if name in wanted]
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One clean run of the small study, with a token planted in its environment."""
    workdir = tmp_path_factory.mktemp("clean-run")
    run = run_study(workdir, HF_TOKEN=PLANTED_TOKEN, HUGGING_FACE_HUB_TOKEN=PLANTED_TOKEN)
    return workdir, run.stdout + run.stderr


@pytest.mark.slow
def test_two_clean_runs_give_identical_quality_columns(clean_run, tmp_path):
    first, _ = clean_run
    run_study(tmp_path)
    a = quality_table(first / "results" / "slurm-test" / "matrix.csv")
    b = quality_table(tmp_path / "results" / "slurm-test" / "matrix.csv")
    assert len(a) > 1
    differences = [(a[0][j], i, x[j], y[j]) for i, (x, y) in enumerate(zip(a, b)) for j in range(len(x))
                   if x[j] != y[j]]
    assert not differences, f"(column, row, first, second): {differences[:20]}"
    # the quality columns hold real numbers, not blanks
    header = a[0]
    assert "headline" in header
    assert all(row[header.index("headline")] not in ("", "nan") for row in a[1:])


@pytest.mark.slow
def test_planted_token_appears_in_no_output(clean_run):
    workdir, console = clean_run
    assert PLANTED_TOKEN not in console
    leaks = []
    for path in workdir.rglob("*"):
        if path.is_file() and path.stat().st_size < 200_000_000:
            if PLANTED_TOKEN.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(workdir)))
    assert not leaks, f"the planted token was written to {leaks}"


def _running_jobs(workdir: Path) -> list[str]:
    """Outputs of jobs Snakemake has started but not finished (its markers in .snakemake/incomplete
    are named by the URL-safe base64 of the output path)."""
    incomplete = workdir / ".snakemake" / "incomplete"
    if not incomplete.is_dir():
        return []
    outputs = []
    for marker in incomplete.rglob("*"):
        if marker.is_file():
            parts = [p.name.lstrip("@") for p in [*reversed(marker.relative_to(incomplete).parents)][1:]]
            try:
                outputs.append(base64.urlsafe_b64decode("".join([*parts, marker.name])).decode())
            except ValueError:
                continue
    return outputs


@pytest.mark.slow
def test_snakemake_killed_mid_study_finishes_on_the_next_run(clean_run, tmp_path):
    # Start the study and kill Snakemake (and its jobs) with SIGKILL once a training job runs.
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(snakemake_command(tmp_path / "work"), env=study_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed_during = None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            checkpoints = list((tmp_path / "work" / "results" / "slurm-test" / "train").rglob("checkpoint-*"))
            training_log = list((tmp_path / "work" / "logs" / "slurm-test" / "train").rglob("*.log"))
            if training_log and _running_jobs(tmp_path / "work"):
                # Give the job a moment to get into its work (a checkpoint, if it gets that far).
                time.sleep(3 if not checkpoints else 0)
                killed_during = _running_jobs(tmp_path / "work")
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert killed_during, "the study finished before a training job could be interrupted:\n" + \
        (tmp_path / "first.log").read_text()[-3000:]
    assert not (tmp_path / "work" / "results" / "slurm-test" / "matrix.csv").exists()

    # Outputs of the jobs that were running. They are written atomically at the end, so a job
    # killed in its work left none; one that had just finished may have (Snakemake had not yet
    # recorded it). Either way the next run must redo it, never take it as complete.
    interrupted = [path for path in killed_during if path.startswith(("results/", "data/"))]
    assert interrupted, killed_during

    # A killed Snakemake leaves its lock behind: `--unlock` (what Snakemake's message asks for)
    # clears it, and the next run redoes what was interrupted.
    unlock = subprocess.run(snakemake_command(tmp_path / "work", "--unlock"), capture_output=True, text=True,
                            timeout=300, env=study_env())
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    second = run_study(tmp_path / "work")
    output = second.stdout + second.stderr
    for path in interrupted:
        assert path in output, f"{path} was interrupted but not redone:\n{output[-3000:]}"
        assert (tmp_path / "work" / path).exists()
    assert quality_table(tmp_path / "work" / "results" / "slurm-test" / "matrix.csv") == \
        quality_table(clean_run[0] / "results" / "slurm-test" / "matrix.csv")
    # Every training output is complete: the model folder and its metrics, nothing temporary left.
    for metrics in (tmp_path / "work" / "results" / "slurm-test" / "train").rglob("train_metrics.json"):
        record = json.loads(metrics.read_text())
        assert record["steps"] > 0
        assert any((metrics.parent / "model").iterdir())
    assert not list((tmp_path / "work" / "results" / "slurm-test").rglob("*.tmp"))


# --- Full disk and unwritable folders (need root to mount a small tmpfs) --------------------

@pytest.fixture
def small_mount(tmp_path):
    """A 64 KiB tmpfs; skipped where mounting is not allowed (not root, or no capability)."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); "
                    f"the full-disk and read-only tests need it")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _arc_source(shared_data: Path) -> dict:
    return {"name": "arc", "kind": "arc", "train_size": 1000, "eval_size": 200, "valid_size": 64, "max_new_tokens": 8,
            "licence": "CC BY-SA 4.0",
            "source": {"type": "local", "format": "arc_release", "revision": "local",
                       "train": str(shared_data / "arc" / "ARC-Challenge" / "ARC-Challenge-Train.jsonl"),
                       "eval": str(shared_data / "arc" / "ARC-Challenge" / "ARC-Challenge-Test.jsonl")}}


def test_full_disk_fails_clearly_and_leaves_nothing_complete_looking(small_mount, shared_data):
    from ftmatrix.data import prepare_task

    out_dir = small_mount / "data" / "tasks" / "arc"
    with pytest.raises(FtmatrixError, match="disk is full") as info:
        prepare_task(_arc_source(shared_data), out_dir=out_dir, data_seed=0, root=ROOT)
    assert str(small_mount) in str(info.value)
    assert not (out_dir / "meta.json").exists()
    leftovers = [p.name for p in out_dir.rglob("*")] if out_dir.exists() else []
    assert not [name for name in leftovers if name.endswith(".tmp")], leftovers


def test_read_only_results_folder_fails_clearly(small_mount):
    from ftmatrix import io as ftio

    target = small_mount / "results" / "eval"
    target.mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(FtmatrixError, match="cannot write here") as info:
        ftio.write_json(target / "metrics.json", {"n": 1})
    assert "make the folder writable" in str(info.value)
    assert not (target / "metrics.json").exists()


def test_snakemake_on_a_read_only_data_folder_stops_with_a_message(small_mount, shared_data, tmp_path):
    # The working directory is writable; its data/ folder is a read-only mount.
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(small_mount, target_is_directory=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
         "--cores", "1", "data/real-data/tasks/arc/meta.json", "--configfile",
         str(ROOT / "studies" / "real-data.yaml")],
        capture_output=True, text=True, timeout=300, env=study_env())
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Read-only file system" in output
    assert "Traceback" not in output
    assert not (workdir / "data" / "real-data" / "tasks" / "arc" / "meta.json").exists()
