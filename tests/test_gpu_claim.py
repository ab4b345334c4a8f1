"""Several GPUs on one machine: each training or evaluation job takes a GPU no other job holds.

Snakemake's global `gpu` limit (profiles/default; `--resources gpu=N` for N GPUs) bounds how
many GPU jobs run at once, but it does not say which GPU a job uses; every job would see all
of them and use the first. `ftmatrix.workflow.claim_gpu` (called by every workflow script of
a job that counts against that limit) locks one GPU per job and narrows CUDA_VISIBLE_DEVICES
to it. Tested with real processes and real file locks; the GPUs are named by device files
passed in, since this machine has none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ftmatrix.workflow import claim_gpu, visible_gpus

ROOT = Path(__file__).resolve().parents[1]
TWO_GPUS = ["/dev/nvidia0", "/dev/nvidia1"]

JOB = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from ftmatrix.workflow import claim_gpu
    environ = dict(os.environ)
    environ.pop("CUDA_VISIBLE_DEVICES", None)
    gpu = claim_gpu({locks!r}, environ=environ, device_files={devices!r}, poll_s=0.05)
    print(json.dumps({{"gpu": gpu, "visible": environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}}),
          flush=True)
    time.sleep(float(sys.argv[1]))
    print(json.dumps({{"end": time.time()}}), flush=True)
""")


def start_job(tmp_path: Path, seconds: float) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(JOB.format(root=str(ROOT), locks=str(tmp_path / "locks"), devices=TWO_GPUS))
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID")}
    return subprocess.Popen([sys.executable, str(script), str(seconds)], stdout=subprocess.PIPE, text=True, env=env)


def first_line(proc: subprocess.Popen) -> dict:
    return json.loads(proc.stdout.readline())


def test_visible_gpus_follow_the_device_files_and_cuda_visible_devices():
    assert visible_gpus({}, TWO_GPUS) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, TWO_GPUS) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, TWO_GPUS) == []
    assert visible_gpus({}, []) == []
    assert visible_gpus({}, ["/dev/kfd"]) == ["0"]


def test_concurrent_jobs_get_different_gpus_and_a_third_waits_for_a_free_one(tmp_path):
    a, b = start_job(tmp_path, 1.5), start_job(tmp_path, 1.5)
    first, second = first_line(a), first_line(b)
    assert {first["gpu"], second["gpu"]} == {"0", "1"}
    assert first["visible"] == first["gpu"] and second["visible"] == second["gpu"]
    c = start_job(tmp_path, 0)
    third = first_line(c)
    ends = [json.loads(p.stdout.readline())["end"] for p in (a, b)]
    for p in (a, b, c):
        p.wait(timeout=30)
    assert third["gpu"] in ("0", "1")
    assert third["start"] >= min(ends) - 0.05, "the third job ran while both GPUs were held"


def test_a_killed_job_frees_its_gpu(tmp_path):
    a, b = start_job(tmp_path, 60), start_job(tmp_path, 60)
    held = {first_line(a)["gpu"], first_line(b)["gpu"]}
    assert held == {"0", "1"}
    c = start_job(tmp_path, 0)
    time.sleep(0.5)
    assert c.poll() is None, "a third job ran while both GPUs were held"
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    third = first_line(c)
    c.wait(timeout=30)
    b.kill()
    b.wait(timeout=30)
    assert third["gpu"] in held


def test_inside_a_scheduler_job_the_gpu_is_left_as_given(tmp_path):
    environ = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"}
    assert claim_gpu(tmp_path / "locks", environ=environ, device_files=TWO_GPUS) is None
    assert environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert not (tmp_path / "locks").exists()


def test_no_gpu_no_claim(tmp_path):
    environ = {}
    assert claim_gpu(tmp_path / "locks", environ=environ, device_files=[]) is None
    assert "CUDA_VISIBLE_DEVICES" not in environ


def test_an_unwritable_lock_folder_leaves_the_gpus_as_they_are(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    environ = {}
    assert claim_gpu(blocker / "locks", environ=environ, device_files=TWO_GPUS) is None
    assert "CUDA_VISIBLE_DEVICES" not in environ


def test_mig_style_ids_with_slashes_get_a_lock_file_name(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "MIG-GPU-1234/1/0"}
    assert claim_gpu(tmp_path / "locks", environ=environ, device_files=TWO_GPUS) == "MIG-GPU-1234/1/0"
    assert environ["CUDA_VISIBLE_DEVICES"] == "MIG-GPU-1234/1/0"
    assert (tmp_path / "locks" / "gpu-MIG-GPU-1234_1_0.lock").is_file()
