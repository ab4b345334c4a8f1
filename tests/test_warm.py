"""Warm start (ftmatrix/warm.py): jobs forked from a process that has imported the libraries.

Real Snakemake runs of a two-rule workflow whose Snakefile starts and stops the server as the
project's does; the demo run (tests/conftest.py) runs the whole demo study warm.
"""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ftmatrix import warm

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

SNAKEFILE = """
import ftmatrix.warm

SERVER = []

onstart:
    if config.get("warm", True):
        SERVER.append(ftmatrix.warm.start("logs/warm_server.log")[0])

onsuccess:
    if SERVER:
        ftmatrix.warm.stop(SERVER.pop())

onerror:
    if SERVER:
        ftmatrix.warm.stop(SERVER.pop())

rule all:
    input: expand("out/{name}.json", name=config.get("names", ["one", "two"]))

rule probe:
    output: "out/{name}.json"
    log: "logs/{name}.log"
    threads: lambda wildcards: 2 if wildcards.name == "two" else 1
    script: "probe.py"
"""

# What the job's script sees, from its first line on.
PROBE = """
import json, os, sys, time
preloaded = "torch" in sys.modules
from ftmatrix.errors import FtmatrixError
from ftmatrix.workflow import run_step

with run_step(snakemake):
    import torch

    name = snakemake.wildcards.name
    if name == "bad":
        raise FtmatrixError("row 3 of probe.jsonl has no answer; fix it and rerun")
    if name == "slow":
        open("slow.pid", "w").write(str(os.getpid()))
        time.sleep(300)
    print("to stdout from", name)
    json.dump({"preloaded": preloaded, "torch_threads": torch.get_num_threads(),
               "omp": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd(), "pid": os.getpid(),
               "forked": os.environ.get("FTMATRIX_WARM_FORKED"),
               "socket_var": os.environ.get("FTMATRIX_WARM_SOCKET")},
              open(snakemake.output[0], "w"))
"""


def workflow(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    return tmp_path


def snakemake(work: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != warm.SOCKET_VAR}
    return subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=work, capture_output=True, text=True,
                          timeout=300, env=env, **kwargs)


def no_server_left(work: Path, log_file: str = "logs/warm_server.log") -> None:
    log = (work / log_file).read_text()
    assert "serving at" in log, log
    path = log.split("serving at ")[1].split(" ")[0]
    deadline = time.monotonic() + 10
    while (os.path.exists(path) or os.path.exists(path + ".starting")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(path), f"the server's socket {path} outlived the run"
    assert not os.path.exists(path + ".starting")


def test_jobs_run_forked_from_the_warm_server(tmp_path):
    work = workflow(tmp_path)
    run = snakemake(work)
    assert run.returncode == 0, run.stderr[-3000:]
    one = json.loads((work / "out" / "one.json").read_text())
    two = json.loads((work / "out" / "two.json").read_text())
    for probe in (one, two):
        assert probe["preloaded"], "the job imported torch itself: it did not run in the warm server's child"
        assert probe["forked"]
        assert probe["cwd"] == str(work)
        assert probe["socket_var"] is None      # the job's own subprocesses do not reach for the server
    # Each job gets its own rule's thread count, not the server's.
    assert (one["omp"], one["torch_threads"]) == ("1", 1)
    assert (two["omp"], two["torch_threads"]) == ("2", 2)
    assert one["pid"] != two["pid"]
    # The job's log and its stdout are the job's own.
    assert "forked from the warm server" in (work / "logs" / "one.log").read_text()
    assert "to stdout from one" in run.stdout + run.stderr
    no_server_left(work)


def test_without_the_server_jobs_run_cold(tmp_path):
    work = workflow(tmp_path)
    run = snakemake(work, "--config", "warm=0")
    assert run.returncode == 0, run.stderr[-3000:]
    probe = json.loads((work / "out" / "one.json").read_text())
    assert not probe["preloaded"] and probe["forked"] is None


def test_a_failing_job_fails_the_run_with_its_message(tmp_path):
    work = workflow(tmp_path)
    run = snakemake(work, "--config", "names=[bad]")
    assert run.returncode != 0
    assert "ftmatrix: probe failed: row 3 of probe.jsonl has no answer; fix it and rerun" in run.stderr
    assert "row 3 of probe.jsonl" in (work / "logs" / "bad.log").read_text()
    assert "forked from the warm server" in (work / "logs" / "bad.log").read_text()
    assert not (work / "out" / "bad.json").exists()
    no_server_left(work)


def start_slow_job(work: Path) -> tuple[subprocess.Popen, int]:
    """A run whose one job sleeps; returns Snakemake (leading its own process group, as a run
    started from a terminal does) and the warm child running the job."""
    env = {k: v for k, v in os.environ.items() if k != warm.SOCKET_VAR}
    run = subprocess.Popen([SNAKEMAKE, "--cores", "2", "--config", "names=[slow]"], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pid_file = work / "slow.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert pid_file.exists(), run.communicate()[0][-3000:]
    assert "forked from the warm server" in (work / "logs" / "slow.log").read_text()
    return run, int(pid_file.read_text())


def assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"the warm job {pid} still runs after its job was stopped"


def test_ctrl_c_stops_the_warm_jobs(tmp_path):
    work = workflow(tmp_path)
    run, child = start_slow_job(work)
    try:
        os.killpg(run.pid, signal.SIGINT)       # Ctrl-C in the terminal: the run's whole process group
        assert_gone(child)
    finally:
        _kill(child)
    output = run.communicate(timeout=120)[0]
    assert run.returncode != 0, output[-2000:]
    assert not (work / "out" / "slow.json").exists()
    no_server_left(work)


def test_a_killed_job_takes_its_warm_child_with_it(tmp_path):
    """However the job's own process ends (here SIGKILL, which it cannot pass on), the child
    running its script ends with it, and Snakemake sees the job fail."""
    work = workflow(tmp_path)
    run, child = start_slow_job(work)
    job = [pid for pid in _processes_of_group(run.pid) if b"probe.py" in _cmdline(pid)]
    assert len(job) == 1, job
    try:
        os.kill(job[0], signal.SIGKILL)
        assert_gone(child)
    finally:
        _kill(child)
    output = run.communicate(timeout=120)[0]
    assert run.returncode != 0, output[-2000:]
    no_server_left(work)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _processes_of_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[1].startswith("Z"))


def job(env: dict, **overrides) -> dict:
    return {"script": "x.py", "argv": ["x.py"], "path": list(sys.path), "cwd": os.getcwd(), "env": env,
            "executable": sys.executable, "version": sys.version, "gpu": False, **overrides}


def test_what_the_server_cannot_stand_in_for():
    server = {"PATH": "/usr/bin", "HF_HOME": "/cache"}
    # Snakemake's per-job thread counts and tmpdir, and the shell's bookkeeping, are the job's own.
    assert warm.mismatch(job({**server, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TMPDIR": "/t",
                              "_": "/usr/bin/python", warm.SOCKET_VAR: "/tmp/s"}), server) is None
    # Anything else the libraries could read at import is not.
    assert "HF_HOME" in warm.mismatch(job({**server, "HF_HOME": "/elsewhere"}), server)
    assert "ATEN_CPU_CAPABILITY" in warm.mismatch(job({**server, "ATEN_CPU_CAPABILITY": "avx2"}), server)
    assert "HF_HOME" in warm.mismatch(job({"PATH": "/usr/bin"}), server)
    assert "GPU" in warm.mismatch(job(server, gpu=True), server)
    assert "the server" in warm.mismatch(job(server, executable="/opt/other/python"), server)


def test_the_server_answers_cold_for_a_job_it_cannot_stand_in_for(tmp_path):
    path = str(tmp_path / "warm.sock")
    server = subprocess.Popen([sys.executable, "-m", "ftmatrix.warm", path, str(os.getpid())],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(path) and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
        assert os.path.exists(path), server.stdout.read() if server.poll() is not None else "no socket"
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2-not-the-servers"}
        warm._send(conn, pickle.dumps(job(env)), fds=[0, 1, 2])
        reply, _ = warm._recv(conn)
        assert reply.startswith(b"C") and b"ATEN_CPU_CAPABILITY" in reply
        conn.close()
        assert server.poll() is None, "a refused job stopped the server"
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert not os.path.exists(path)


def test_a_batch_schedulers_job_runs_cold(tmp_path, monkeypatch):
    # Under SLURM (or another scheduler) the job must stay inside the scheduler's allocation.
    monkeypatch.setenv(warm.SOCKET_VAR, str(tmp_path / "absent.sock"))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    status, note = warm.delegate(None)
    assert status is None and "SLURM_JOB_ID" in note


def test_the_demo_runs_warm(demo_run):
    """The demo study turns warm start on: its training and evaluation jobs (every one after the
    server has imported) run forked, and the server is gone when the run ends."""
    work = demo_run["root"]
    logs = [p.read_text() for p in (work / "logs" / "demo").rglob("*.log")]
    for rule, jobs in (("train_variant", 20), ("evaluate_cell", 42), ("time_round", 3)):
        ran = [text for text in logs if f"{rule} done" in text]
        forked = [text for text in ran if "forked from the warm server" in text]
        assert len(ran) == jobs and len(forked) == jobs, (rule, len(ran), len(forked))
    no_server_left(work, "logs/demo/warm_server.log")


def test_no_server_where_none_can_start(tmp_path, monkeypatch, capsys):
    """A temporary folder that is not there: a warning, and every job starts its own process."""
    import tempfile

    monkeypatch.delenv(warm.SOCKET_VAR, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    assert warm.start(tmp_path / "logs" / "warm_server.log") == (None, None)
    assert warm.SOCKET_VAR not in os.environ
    assert "warm start is not available here" in capsys.readouterr().err
    warm.stop(None)
