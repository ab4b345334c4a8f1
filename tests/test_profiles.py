"""The two profiles, checked without a cluster: one machine never runs two GPU jobs at once;
the SLURM profile asks SLURM for one GPU per training and evaluation job and none for the
rest, grows memory and time with the attempt, and marks what a site must fill in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.test_parse import probe_snakemake

ROOT = Path(__file__).resolve().parents[1]
GPU_RULES = {"train_variant", "evaluate_cell", "time_round"}
TARGETS: list[str] = []  # the default target: the whole study


def snakemake(args: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{output[-4000:]}"
    return output


def dry_run_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job in a dry run's output."""
    jobs, rule = [], None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            rule = match.group(1)
        elif rule and line.strip().startswith("resources:"):
            pairs = line.split("resources:", 1)[1].split(", ")
            jobs.append((rule, dict(p.strip().split("=", 1) for p in pairs if "=" in p)))
            rule = None
    return jobs


def slurm_dry_run(tmp_path: Path, *extra: str) -> list[tuple[str, dict]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    output = snakemake(["-n", "--profile", str(ROOT / "profiles" / "slurm"), "-s", str(ROOT / "Snakefile"),
                        "-d", str(tmp_path), *extra, *TARGETS, "--configfile", str(ROOT / "studies" / "demo.yaml")],
                       cwd=tmp_path)
    assert "localrules directive specifies rules that are not present" not in output
    jobs = dry_run_jobs(output)
    assert {rule for rule, _ in jobs} >= GPU_RULES | {"score_cell", "prepare_task", "build_model"}
    return jobs


def test_default_profile_runs_one_gpu_job_at_a_time(tmp_path):
    """Three GPU jobs and three CPU jobs on two cores: GPU jobs never overlap each other,
    while a CPU job does run beside a GPU job (so the cores alone do not serialise them)."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent(
        """
        rule all:
            input: expand("gpu{i}.txt", i=range(3)), expand("cpu{i}.txt", i=range(3))

        rule gpu_job:
            output: "gpu{i}.txt"
            resources: gpu=1
            shell: "date +%s.%N > {output}; sleep 2; date +%s.%N >> {output}"

        rule cpu_job:
            output: "cpu{i}.txt"
            shell: "date +%s.%N > {output}; sleep 2; date +%s.%N >> {output}"
        """))
    snakemake(["--workflow-profile", str(ROOT / "profiles" / "default"), "--cores", "2"], cwd=tmp_path)

    def interval(name):
        start, end = (float(x) for x in (tmp_path / name).read_text().split())
        return start, end

    gpu = sorted(interval(f"gpu{i}.txt") for i in range(3))
    cpu = [interval(f"cpu{i}.txt") for i in range(3)]
    for (_, end), (start, _) in zip(gpu, gpu[1:]):
        assert start >= end, f"two GPU jobs ran at once: {gpu}"
    assert any(c0 < g1 and g0 < c1 for g0, g1 in gpu for c0, c1 in cpu), \
        "no CPU job ran beside a GPU job; the check above proves nothing"


def test_slurm_profile_asks_for_one_gpu_for_training_and_evaluation_only(tmp_path):
    jobs = slurm_dry_run(tmp_path)
    for rule, res in jobs:
        if rule in GPU_RULES:
            assert res.get("gres") == "gpu:1", (rule, res)
            # SLURM hands out the GPUs; the single-machine limit must not serialise them.
            assert res.get("gpu") == "0", (rule, res)
            assert int(res["cpus_per_gpu"]) >= 1
        else:
            assert "gres" not in res and res.get("gpu", "0") == "0", (rule, res)
        assert int(res["mem_mb"]) >= 500 and int(res["runtime"]) >= 5, (rule, res)


def test_slurm_profile_marks_partition_and_account_as_placeholders(tmp_path):
    for rule, res in slurm_dry_run(tmp_path):
        assert res["slurm_partition"].startswith("EDIT-ME"), (rule, res)
        assert res["slurm_account"].startswith("EDIT-ME"), (rule, res)


def test_a_retried_gpu_job_gets_more_memory_and_time(tmp_path):
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["retries"] >= 1
    first = slurm_dry_run(tmp_path / "1")
    second = slurm_dry_run(tmp_path / "2", "--attempt", "2")
    # Jobs of one rule differ in size (models, tasks) and a dry run lists them in no fixed order,
    # so each rule's requests are compared as sorted lists.
    for rule in GPU_RULES:
        for key in ("mem_mb", "runtime"):
            once = sorted(int(res[key]) for r, res in first if r == rule)
            twice = sorted(int(res[key]) for r, res in second if r == rule)
            assert once and twice == [2 * value for value in once], (rule, key, once, twice)


def test_slurm_status_checks_work_without_accounting():
    """sacct fails where SLURM has no accounting database; squeue works either way."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"


def test_configured_hf_home_reaches_every_job(tmp_path):
    """Every job parses the workflow again, so HF_HOME set at parse time is what jobs see."""
    report = probe_snakemake(["-n", "--cores", "1", "results/demo/matrix.csv", "--configfile",
                              str(ROOT / "studies" / "demo.yaml"), "--config", "hf_home=cache/hf"],
                             tmp_path)
    assert report["hf_home"] == str(ROOT / "cache" / "hf")
    report = probe_snakemake(["-n", "--cores", "1", "results/demo/matrix.csv", "--configfile",
                              str(ROOT / "studies" / "demo.yaml")], tmp_path)
    assert report["hf_home"] is None



def test_gpu_jobs_hold_the_gpu_only_on_a_machine_that_has_one():
    from ftmatrix.workflow import machine_has_gpu

    assert machine_has_gpu({}, ["/dev/nvidia0"])
    assert machine_has_gpu({"CUDA_VISIBLE_DEVICES": "0"}, ["/dev/kfd"])
    assert not machine_has_gpu({}, [])
    # an empty or -1 CUDA_VISIBLE_DEVICES hides the GPUs from torch
    assert not machine_has_gpu({"CUDA_VISIBLE_DEVICES": ""}, ["/dev/nvidia0"])
    assert not machine_has_gpu({"CUDA_VISIBLE_DEVICES": "-1"}, ["/dev/nvidia0"])


def test_training_and_evaluation_jobs_declare_the_gpu_this_machine_has(tmp_path):
    """`snakemake -n` on the demo: the jobs' gpu resource is 1 where a GPU is visible and 0
    where none is (CUDA_VISIBLE_DEVICES=-1), so a CPU-only machine runs them side by side."""
    from ftmatrix.workflow import machine_has_gpu

    def gpu_counts(env):
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"),
                               "-d", str(tmp_path), "--cores", "2", "train", "evaluate",
                               "--configfile", str(ROOT / "studies" / "demo.yaml")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr[-3000:]
        return set(re.findall(r"resources: .*?\bgpu=(\d)", done.stdout + done.stderr))

    assert gpu_counts({"CUDA_VISIBLE_DEVICES": "-1"}) == {"0"}
    assert gpu_counts({}) == ({"1"} if machine_has_gpu() else {"0"})
