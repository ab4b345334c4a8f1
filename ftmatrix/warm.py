"""Warm start: the jobs of one local Snakemake run forked from a process that has already
imported torch, transformers, PEFT and TRL.

Every job of the workflow is a Python process of its own (one job per cell), and each spends
about six seconds importing the libraries before its work (on a 2-core machine); a demo
cell's own work is a second or two. With ``warm_start: true`` (the demo's study file), the
Snakefile's ``onstart`` starts a server on this machine that imports the libraries once and
listens on a Unix socket named by ``FTMATRIX_WARM_SOCKET``. A job's ``run_step`` hands its
script to the server, which forks a child to run it: the same script, arguments,
environment, working folder and ``sys.path``, writing to the job's own stdout and stderr (the
file descriptors travel over the socket). The job's process waits, passes on SIGTERM and
SIGINT, and exits with the child's status; if the job's process dies, the child is killed.

A job runs as before, in its own process ("cold"), whenever the server cannot stand in for it
exactly: no server (a run without the key, a cluster run, a server that could not start), a
job under a batch scheduler (it stays inside its allocation), another Python, an environment
that differs from the server's in anything but the thread-count and temporary-folder
variables Snakemake sets per job, or a job that claims a GPU (CUDA must be set up after the
fork, in a process of its own). A job that starts while the server is still importing waits
for it. The project's own modules are never
imported by the server: each child imports them from disk, as a cold job does.

What differs: Snakemake's benchmark files (``benchmark:``) measure the job's process, so
with warm start their wall-clock seconds hold, but memory and CPU time are those of the
waiting process, not the child's.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

SOCKET_VAR = "FTMATRIX_WARM_SOCKET"
# The libraries every training and evaluation job imports; the server imports them once.
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.qwen3.modeling_qwen3",
    "peft",
    "datasets",
    "accelerate",
    "trl",
)
# Snakemake sets these per job (its thread count, the job's tmpdir resource); a child applies
# the job's own values (torch.set_num_threads, tempfile) instead of the server's.
PER_JOB_VARS = frozenset({
    "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
    SOCKET_VAR,
    # The shell's own bookkeeping (the job's command runs in bash), read by no library.
    "_", "SHLVL", "PWD", "OLDPWD",
})
_HEADER = struct.Struct("!I")


def _send(conn: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    header = _HEADER.pack(len(payload))
    if fds:
        socket.send_fds(conn, [header], fds)
    else:
        conn.sendall(header)
    conn.sendall(payload)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the other end closed the connection")
        data += chunk
    return data


def _recv(conn: socket.socket, with_fds: bool = False) -> tuple[bytes, list[int]]:
    fds: list[int] = []
    if with_fds:
        header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
        if len(header) < _HEADER.size:
            header += _recv_exact(conn, _HEADER.size - len(header))
    else:
        header = _recv_exact(conn, _HEADER.size)
    (size,) = _HEADER.unpack(header)
    return _recv_exact(conn, size), fds


def mismatch(job: dict, server_env: dict | None = None) -> str | None:
    """Why the server cannot run this job exactly as a process of its own would (None: it can)."""
    server_env = dict(os.environ) if server_env is None else server_env
    if job["executable"] != sys.executable or job["version"] != sys.version:
        return f"the job runs {job['executable']} ({job['version'].split()[0]}), the server {sys.executable}"
    if job.get("gpu"):
        return "the job claims a GPU"
    keys = (set(job["env"]) | set(server_env)) - PER_JOB_VARS
    differ = sorted(k for k in keys if job["env"].get(k) != server_env.get(k))
    if differ:
        return "its environment differs from the server's in " + ", ".join(differ[:8])
    return None


# ---------------------------------------------------------------------------------------
# The job's side


def delegate(snakemake) -> tuple[int | None, str | None]:
    """Run this job's script in a child of the warm server. Returns the child's exit status,
    or None when the job must run here (no server, or one that cannot stand in for it), and
    a sentence for the job's log saying why."""
    from ftmatrix.workflow import SCHEDULER_JOB_VARS

    path = os.environ.get(SOCKET_VAR)
    if not path:
        return None, None
    batch = [var for var in SCHEDULER_JOB_VARS if os.environ.get(var)]
    if batch:
        return None, f"warm start: running cold, as a batch scheduler's job ({batch[0]} is set)"
    if not _wait_for_server(path):
        return None, f"warm start: running cold: no server at {path}"
    job = {
        "script": os.path.abspath(sys.argv[0]),
        "argv": list(sys.argv),
        "path": list(sys.path),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "executable": sys.executable,
        "version": sys.version,
        "gpu": int(snakemake.resources.get("gpu", 0) or 0) > 0 if snakemake is not None else False,
    }
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _send(conn, pickle.dumps(job), fds=[0, 1, 2])
        reply, _ = _recv(conn)
    except OSError as exc:
        conn.close()
        return None, f"warm start: running cold: the server at {path} did not answer ({exc})"
    kind, detail = reply[:1], reply[1:]
    if kind != b"W":
        conn.close()
        return None, f"warm start: running cold: {detail.decode(errors='replace')}"
    child = int(detail.decode())

    def forward(signum, _frame):
        try:
            os.killpg(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        status, _ = _recv(conn)
        return int(status.decode()), None
    except (ConnectionError, ValueError):
        print(f"\nftmatrix: the job's process {child} (forked from the warm server at {path}) ended "
              f"without an exit status: it was killed or crashed. Its log says how far it got; "
              f"set warm_start: false to run every job in a process of its own.\n",
              file=sys.stderr, flush=True)
        return 1, None
    finally:
        conn.close()


def _wait_for_server(path: str, timeout_s: float = 120.0) -> bool:
    """Whether the server's socket is there, waiting while the server is still importing (its
    ``<path>.starting`` file holds its process id): a job started in the run's first seconds
    waits for it rather than importing the same libraries beside it."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        try:
            pid = int(Path(f"{path}.starting").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return os.path.exists(path)     # no server starting (or it died while importing)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---------------------------------------------------------------------------------------
# The server's side


def _run_child(conn: socket.socket, job: dict, fds: list[int], imported_env: dict) -> None:
    """In the forked child: become the job, run its script, report its exit status. Never returns."""
    code = 1
    try:
        # A Python process's own dispositions (SIGPIPE stays ignored, as Python leaves it).
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()                     # its own process group: the job's process signals it whole
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update({k: v for k, v in job["env"].items() if k != SOCKET_VAR})
        # What the libraries set when imported (a cold job has it after its imports too).
        os.environ.update({k: v for k, v in imported_env.items() if k not in os.environ})
        os.environ["FTMATRIX_WARM_FORKED"] = str(os.getppid())
        os.chdir(job["cwd"])
        sys.argv[:] = job["argv"]
        sys.path[:] = job["path"]
        tempfile.tempdir = None         # taken again from the job's TMPDIR
        import random

        random.seed()
        # The project's code comes from disk, as in a cold job.
        for name in [m for m in sys.modules if m == "ftmatrix" or m.startswith("ftmatrix.")]:
            del sys.modules[name]
        threads = job["env"].get("OMP_NUM_THREADS")
        if threads and threads.isdigit() and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(max(1, int(threads)))
        _watch(conn)
        _send(conn, b"W" + str(os.getpid()).encode())
        import runpy

        try:
            runpy.run_path(job["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            # What an interpreter does on its way out (logging's flush among them), before
            # the job's process is told the status and Snakemake looks at the outputs.
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            _send(conn, str(code).encode())
        except OSError:
            pass
        os._exit(code)


def _watch(conn: socket.socket) -> None:
    """Kill this child's process group when the job's process goes away (its end of the
    socket closes): a job Snakemake killed leaves nothing running."""
    import threading

    watched = conn.dup()

    def watch():
        try:
            while watched.recv(1):
                pass
        except OSError:
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="ftmatrix-warm-watch").start()


def serve(path: str, parent: int | None = None) -> None:
    """Import the libraries, then fork a child for each job that connects, until the process
    that started the server (Snakemake) ends or it is sent SIGTERM."""
    started = time.perf_counter()
    import importlib

    server_env = dict(os.environ)       # what a job's environment is compared with
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"warm start: {name} not importable ({exc}); jobs import it themselves", file=sys.stderr)
    imported_env = {k: v for k, v in os.environ.items() if k not in server_env}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = f"{path}.{os.getpid()}"
    sock.bind(partial)
    os.chmod(partial, 0o600)            # this user's jobs only
    sock.listen(64)
    os.replace(partial, path)           # jobs see the socket only once the server is ready
    Path(f"{path}.starting").unlink(missing_ok=True)
    print(f"warm start: serving at {path} ({time.perf_counter() - started:.1f} s to import)",
          file=sys.stderr, flush=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # children are reaped by the kernel
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    parent = os.getppid() if parent is None else parent
    try:
        while not stop and os.getppid() == parent:
            ready, _, _ = select.select([sock], [], [], 1.0)
            if not ready:
                continue
            try:
                conn, _ = sock.accept()
            except InterruptedError:
                continue
            try:
                conn.settimeout(30)     # a job that connects and sends nothing cannot hold the server
                payload, fds = _recv(conn, with_fds=True)
                conn.settimeout(None)
                job = pickle.loads(payload)
                reason = mismatch(job, server_env)
                if reason is None and len(fds) != 3:
                    reason = "the job's stdin, stdout and stderr did not arrive"
                if reason:
                    _send(conn, b"C" + reason.encode())
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                if os.fork() == 0:
                    sock.close()
                    _run_child(conn, job, fds, imported_env)
                for fd in fds:
                    os.close(fd)
                conn.close()
            except Exception as exc:        # a bad request must not stop the server
                print(f"warm start: a request failed: {exc!r}", file=sys.stderr, flush=True)
                conn.close()
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)


def start(log_file: str | Path) -> tuple[object, str | None]:
    """Start a server for this Snakemake run (from its ``onstart``): returns the process and
    the socket's path, which jobs find in ``FTMATRIX_WARM_SOCKET`` — or (None, None), with a
    warning, where no server can be started (every job then starts its own process)."""
    import subprocess

    path = os.path.join(tempfile.gettempdir(), f"ftmatrix-warm-{os.getpid()}-{os.urandom(4).hex()}.sock")
    process = None
    try:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ftmatrix.warm", path, str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(Path(__file__).resolve().parent.parent), start_new_session=True)
        Path(f"{path}.starting").write_text(str(process.pid))
    except OSError as exc:
        if process is not None:
            process.kill()
        print(f"ftmatrix: warm start is not available here ({exc}); every job starts its own process",
              file=sys.stderr, flush=True)
        return None, None
    os.environ[SOCKET_VAR] = path
    return process, path


def stop(process) -> None:
    """Stop the server (from the Snakefile's ``onsuccess`` and ``onerror``)."""
    path = os.environ.pop(SOCKET_VAR, None)
    if path:
        Path(f"{path}.starting").unlink(missing_ok=True)
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
