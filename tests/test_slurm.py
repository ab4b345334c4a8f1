"""The study runs on a real SLURM cluster through profiles/slurm, and gives the same matrix.

Needs a running cluster with a GPU GRES (../shared/tools/slurm-local.sh start); skipped
with the reason when there is none, unless FTMATRIX_REQUIRE_SLURM=1 (CI), which turns
the skip into a failure. The check:

1. studies/slurm-test.yaml runs to results/slurm-test/matrix.csv with `--profile` = profiles/slurm
   with only its EDIT-ME placeholders filled in (the cluster's partition, no account) and
   short status-check intervals;
2. SLURM's accounting (sacct ReqTRES/AllocTRES; `scontrol show job` where the cluster has
   no accounting) shows one GPU for every training and evaluation job, none for the other
   jobs, and no job for the rules that run locally (downloads, data preparation, scoring,
   aggregation);
3. the same study run locally gives a matrix with the same quality columns, answers and
   training losses, and pointing it at the cluster and a shared HF_HOME reruns nothing.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "slurm-test.yaml"
TARGET = "results/slurm-test/matrix.csv"
GPU_RULES = {"train_variant", "evaluate_cell", "time_round"}
LOCAL_RULES = {"build_demo_world", "prepare_task", "score_cell", "aggregate_matrix"}
RUN_TIMEOUT_S = int(os.environ.get("FTMATRIX_SLURM_TIMEOUT", "1500"))

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def skip_or_fail(reason: str):
    if os.environ.get("FTMATRIX_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (FTMATRIX_REQUIRE_SLURM=1 requires the cluster)")
    pytest.skip(reason)


def command(args: list[str], timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def partition() -> str:
    """The cluster's partition for this test, once it is up with a schedulable GPU."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        skip_or_fail("SLURM's client tools (sinfo, sbatch) are not installed; "
                     "start a cluster with ../shared/tools/slurm-local.sh start")
    deadline = time.monotonic() + 60
    while True:
        try:
            proc = command(["sinfo", "-h", "-o", "%P|%a|%t|%G"])
        except subprocess.TimeoutExpired:
            proc = None
        rows = [line.split("|") for line in proc.stdout.split()] if proc and proc.returncode == 0 else []
        usable = [r for r in rows if r[1] == "up" and r[2].rstrip("*~#") in ("idle", "mix", "alloc")]
        if usable or time.monotonic() > deadline:
            break
        time.sleep(2)
    if not usable:
        why = (proc.stderr.strip() if proc else "sinfo timed out") or f"no partition up with a usable node: {rows}"
        skip_or_fail(f"SLURM is not up ({why}); start it with ../shared/tools/slurm-local.sh start")
    with_gpu = [r for r in usable if "gpu" in r[3]]
    if not with_gpu:
        skip_or_fail(f"no partition has a GPU GRES ({usable}); start the cluster without --no-gpu")
    default = [r for r in with_gpu if r[0].endswith("*")]
    return (default or with_gpu)[0][0].rstrip("*")


def filled_profile(tmp_path: Path, partition: str) -> Path:
    """profiles/slurm with its placeholders filled in for this cluster."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())

    def fill(resources: dict) -> dict:
        out = {}
        for key, value in resources.items():
            if key == "slurm_account":
                continue  # the test cluster has no accounts
            out[key] = partition if key == "slurm_partition" else value
        return out

    profile["default-resources"] = fill(profile["default-resources"])
    profile["set-resources"] = {rule: fill(res) for rule, res in profile["set-resources"].items()}
    placeholders = [line for line in yaml.safe_dump(profile).splitlines() if "EDIT-ME" in line]
    assert not placeholders, f"placeholders this test does not know how to fill: {placeholders}"
    profile.update({
        "slurm-init-seconds-before-status-checks": 2,
        "latency-wait": 5,
        "slurm-keep-successful-logs": True,
    })
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


class Run:
    """Snakemake in the background, its output in a file, with a time limit."""

    def __init__(self, args: list[str], workdir: Path, log: Path):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        self.args, self.workdir, self.log = args, workdir, log
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.deadline = time.monotonic() + RUN_TIMEOUT_S

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self) -> int:
        """The exit status; on timeout, stop Snakemake, cancel its SLURM jobs, and fail."""
        try:
            return self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake did not finish within {RUN_TIMEOUT_S} s (FTMATRIX_SLURM_TIMEOUT): "
                        f"{' '.join(self.args)}\n{self.output[-4000:]}{slurm_logs(self.workdir)}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        run_id = re.search(r"SLURM run ID: (\S+)", self.output)
        if run_id:
            command(["scancel", "--name", run_id.group(1)])


def slurm_logs(workdir: Path, limit: int = 3) -> str:
    """The tails of the SLURM job logs that show an error (or the latest ones)."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
    failing = [p for p in logs if re.search(r"Error|Traceback|error:", p.read_text(errors="replace"))]
    chosen = (failing or logs)[-limit:]
    return "".join(f"\n--- SLURM log {p.relative_to(workdir)} ---\n{p.read_text(errors='replace')[-3000:]}"
                   for p in chosen)


def submitted_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's 'Job N has been submitted with SLURM jobid' lines."""
    jobs = {}
    for match in re.finditer(r"submitted with SLURM jobid (\d+) \(log: \S*?/rule_(\w+)/", output):
        jobs[match.group(1)] = match.group(2)
    return jobs


def slurm_records(job_ids: list[str], run_id: str) -> dict[str, dict]:
    """SLURM's record of each job, once the accounting shows them all ended."""
    deadline = time.monotonic() + 60
    while True:
        records = read_slurm_records(job_ids, run_id)
        ended = all(r["state"] not in ("PENDING", "RUNNING", "COMPLETING") for r in records.values())
        if (ended and set(records) >= set(job_ids)) or time.monotonic() > deadline:
            return records
        time.sleep(2)


def read_slurm_records(job_ids: list[str], run_id: str) -> dict[str, dict]:
    """SLURM's record of each job: requested and allocated TRES, and state."""
    records = {}
    proc = command(["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids),
                    "-o", "JobIDRaw,JobName,ReqTRES,AllocTRES,State"])
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            job_id, name, req, alloc, state = line.split("|")
            if job_id in job_ids:
                records[job_id] = {"name": name, "req": req, "alloc": alloc, "state": state, "source": "sacct"}
        # Everything this run submitted, by its name, to catch a job the log did not show.
        proc = command(["sacct", "-X", "-P", "-n", "--name", run_id, "-S", "now-1days", "-o", "JobIDRaw"])
        for job_id in proc.stdout.split():
            records.setdefault(job_id, {"name": run_id, "req": "", "alloc": "", "state": "?",
                                        "source": "sacct --name"})
        return records
    # No accounting database: slurmctld still knows jobs that ended less than MinJobAge ago.
    # It shows the request as TresPerNode/TresPerJob=gres:gpu[:type]:N and the allocation
    # as JOB_GRES=gpu[:type]:N; both are rewritten here in sacct's form, gres/gpu=N.
    for job_id in job_ids:
        show = command(["scontrol", "-d", "-o", "show", "job", job_id])
        if show.returncode != 0:
            continue
        text = show.stdout
        req = re.search(r"TresPer(?:Node|Job|Task)=\S*?gres:gpu(?::[\w.]+)?:(\d+)", text)
        alloc = re.search(r"JOB_GRES=gpu(?::[\w.]+)?:(\d+)", text)
        state = re.search(r"JobState=(\S+)", text)
        records[job_id] = {"name": "", "req": f"gres/gpu={req.group(1)}" if req else "",
                           "alloc": f"gres/gpu={alloc.group(1)}" if alloc else "",
                           "state": state.group(1) if state else "?", "source": "scontrol -d show job"}
    listed = command(["squeue", "-h", "-t", "all", "--name", run_id, "-o", "%i"])
    for job_id in listed.stdout.split():
        records.setdefault(job_id, {"name": run_id, "req": "", "alloc": "", "state": "?",
                                    "source": "squeue --name"})
    return records


def gpus(tres: str) -> int:
    match = re.search(r"gres/gpu(?::[^=,]+)?=(\d+)", tres)
    return int(match.group(1)) if match else 0


def read_matrix(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# Training results that depend on nothing but the computation (no clock): floats with all
# their digits, so a run that trained differently shows here.
DETERMINISTIC_TRAINING_COLUMNS = ["trainable_params", "total_params", "train_steps", "train_tokens",
                                  "train_final_loss", "heldout_loss_before", "heldout_loss_after"]


def answers(workdir: Path) -> dict[str, list]:
    """Every cell's generated answers, from its predictions.jsonl."""
    out = {}
    for path in sorted((workdir / "results" / "slurm-test" / "eval").rglob("predictions.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[str(path.relative_to(workdir))] = [(r["id"], r["generated"], r.get("extracted")) for r in rows]
    return out


def test_study_runs_on_slurm_with_one_gpu_per_gpu_job_and_matches_a_local_run(tmp_path, partition):
    import ftmatrix.config
    import ftmatrix.grid
    from ftmatrix.aggregate import quality_columns

    config = ftmatrix.config.load(ROOT / "config.yaml", [STUDY])
    expected = {"train_variant": len(ftmatrix.grid.trained_variants(config)),
                "evaluate_cell": len(ftmatrix.grid.cells(config)),
                "build_model": sum(m["source"] == "build" for m in config["models"]),
                # The timed passes: one job per round, on a GPU node of its own (--exclusive).
                "time_round": config["evaluate"]["timing_rounds"]}
    assert config["evaluate"]["latency_samples"] > 0
    assert expected["train_variant"] >= 2 and expected["evaluate_cell"] >= 3

    # The SLURM run and, beside it, the same study run locally (most of a run's time is
    # waiting: for SLURM's status checks, for Python to start).
    profile = filled_profile(tmp_path, partition)
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    slurm_run = Run(["--profile", str(profile), TARGET, "--configfile", str(STUDY)], on_slurm,
                    tmp_path / "slurm.log")
    local_run = Run(["--cores", "all", TARGET, "--configfile", str(STUDY)], local, tmp_path / "local.log")
    try:
        rc = slurm_run.wait()
        output = slurm_run.output
        assert rc == 0, f"the SLURM run failed (rc={rc}):\n{output[-5000:]}{slurm_logs(on_slurm)}"
        rc = local_run.wait()
        assert rc == 0, f"the local run failed (rc={rc}):\n{local_run.output[-5000:]}"
    finally:
        slurm_run.stop()
        local_run.stop()

    # Which rules went through sbatch, and what SLURM recorded for each job.
    submitted = submitted_jobs(output)
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    counts = {rule: list(submitted.values()).count(rule) for rule in set(submitted.values())}
    assert counts == expected, f"jobs sent to SLURM per rule: {counts}, expected {expected}"
    assert not LOCAL_RULES & set(counts), f"local rules went to SLURM: {LOCAL_RULES & set(counts)}"
    for rule in LOCAL_RULES:
        assert re.search(rf"^localrule {rule}:$", output, re.M), f"{rule} did not run locally"
    records = slurm_records(sorted(submitted), run_id)
    assert set(records) == set(submitted), (
        f"SLURM's records ({sorted(records)}) and the submissions ({sorted(submitted)}) differ")
    for job_id, rule in submitted.items():
        record = records[job_id]
        want = 1 if rule in GPU_RULES else 0
        assert gpus(record["req"]) == want and gpus(record["alloc"]) == want, (
            f"SLURM job {job_id} ({rule}) asked for {record['req']!r} and got {record['alloc']!r} "
            f"({record['source']}); expected {want} GPU")
        assert record["state"].startswith("COMPLETED"), (job_id, rule, record)

    # The same matrix: every quality column, and the training results, digit for digit.
    header, slurm_rows = read_matrix(on_slurm / TARGET)
    local_header, local_rows = read_matrix(local / TARGET)
    assert header == local_header
    columns = quality_columns(header) + [c for c in DETERMINISTIC_TRAINING_COLUMNS if c in header]
    assert "headline" in columns and "train_final_loss" in columns
    assert len(slurm_rows) == len(local_rows) == expected["evaluate_cell"]
    for slurm_row, local_row in zip(slurm_rows, local_rows):
        differ = {c: (slurm_row[c], local_row[c]) for c in columns if slurm_row[c] != local_row[c]}
        assert not differ, f"cell {slurm_row['cell']}: SLURM and local runs differ in {differ}"
    assert sum(bool(r["train_final_loss"]) for r in slurm_rows) >= expected["train_variant"]
    slurm_answers, local_answers = answers(on_slurm), answers(local)
    assert len(slurm_answers) == expected["evaluate_cell"]
    assert slurm_answers == local_answers, "the SLURM and local runs generated different answers"

    # A study finished on one machine and moved to the cluster, with a shared HF cache,
    # is not run again: where things run is no parameter of any job.
    moved = Run(["-n", "--profile", str(profile), TARGET, "--configfile", str(STUDY),
                 "--config", f"hf_home={tmp_path / 'hf'}"], local, tmp_path / "moved.log")
    assert moved.wait() == 0, moved.output[-4000:]
    assert "Nothing to be done" in moved.output, f"the finished study would run again:\n{moved.output[-4000:]}"
