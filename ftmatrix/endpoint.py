"""Stage 3a for an endpoint model (``source: api``): one cell's generations from an
OpenAI-compatible server, through the ``openai`` engine (ftmatrix.engines.openai_endpoint).

``evaluate_endpoint_cell`` writes the same two files as the local quality pass
(ftmatrix.evaluate): ``generations.jsonl`` (one ``GenerationRow`` per sample, in the eval
file's order) and ``generation.json`` (a ``GenerationRecord`` with ``engine: openai``, the
endpoint without its key, the tokens billed and their cost). Scoring reads them like any
other cell's.

Per sample (definitions as in ftmatrix.evaluate, measured at the client):

* ``prompt``: the eval file's chat messages as sent (JSON), since the server renders them;
* ``input_tokens`` / ``output_tokens``: the response's ``usage`` (what the provider bills);
* ``hit_limit``: the finish reason is ``length`` (the task's max_new_tokens);
* ``latency_s``: from sending the request until the stream's last chunk; ``ttft_s``: until
  the first chunk with text; ``tpot_s`` from both. Every request is timed; the latency
  includes the network and the server's queue, which is what a user of the endpoint waits;
* a sample that still failed after every retry has ``error`` set and no text: scoring leaves
  it out and the cell counts it (``GenerationRecord.failed``).

Nothing is paid for twice: every response is appended to ``responses.jsonl`` beside the
outputs (flushed at once; not a declared output, so Snakemake never deletes it) under a
fingerprint of the request (endpoint, model id, messages, budget, extra fields). A rerun —
after a kill, a failure, ``--forcerun`` or a change elsewhere — reuses each saved response
whose request is unchanged and sends only the rest. Delete the file to ask again.

With ``api.serve``, the job starts ``transformers serve`` on the named model entry's folder on
127.0.0.1 (a free port, so parallel cells each have their own), waits until it answers, and
stops it when the cell is done, however the job ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ftmatrix import io, provenance
from ftmatrix.engines import Completion
from ftmatrix.engines.openai_endpoint import EndpointClient, Endpoint, request_fingerprint, run_requests
from ftmatrix.errors import ModelError
from ftmatrix.records import Decoding, GenerationRecord, GenerationRow

log = logging.getLogger("ftmatrix.endpoint")

RESPONSES = "responses.jsonl"


# --------------------------------------------------------------------------- a local server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# transformers serve parses a Qwen3 answer into reasoning and content by a response template,
# and the content then starts with the "\n\n" that follows the prompt's empty think block; the
# served text is the model's raw answer instead, as vLLM's server returns it without a
# reasoning parser (its default), so it is the text the local evaluation generates.
_SERVE_RAW_TEXT = ("import transformers.cli.serving.utils as serving; "
                   "assert hasattr(serving, 'get_response_template'), 'transformers serve changed'; "
                   "serving.get_response_template = lambda *args: None; "
                   "from transformers.cli.transformers import main; main()")


def transformers_serve_command(folder: str | Path, port: int) -> list[str]:
    """`transformers serve` of a model folder on 127.0.0.1, in fp32 on the CPU (the demo's API row),
    from this environment, returning the raw answer text."""
    return [sys.executable, "-c", _SERVE_RAW_TEXT, "serve", str(folder),
            "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32",
            "--log-level", "warning"]


@contextlib.contextmanager
def running_server(command: list[str], base_url: str, log_file: str | Path, *, timeout_s: float = 300,
                   threads: int = 1, what: str = "server"):
    """Start ``command``, wait until ``base_url``/models answers, yield; stop it on the way out.

    A server that exits or does not answer within ``timeout_s`` stops the job with the end of
    its log."""
    import urllib.error
    import urllib.request

    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    with open(log_file, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    started = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:]
                raise ModelError(f"the {what} ({' '.join(command[:1] + command[3:5])} …) exited with code "
                                 f"{proc.returncode} before answering; its log ({log_file}) ends:\n{tail}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() - started > timeout_s:
                tail = log_file.read_text(errors="replace")[-2000:]
                raise ModelError(f"the {what} did not answer at {base_url} within {timeout_s:g} s "
                                 f"(api.serve.startup_timeout_s); its log ({log_file}) ends:\n{tail}")
            time.sleep(0.25)
        log.info("%s answering at %s after %.1f s", what, base_url, time.perf_counter() - started)
        yield time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- the response store


def load_responses(path: Path) -> dict[str, dict]:
    """Saved responses by request fingerprint (a line cut short by a kill is dropped)."""
    if not path.exists():
        return {}
    return {row["fingerprint"]: row for row in io.read_jsonl(path, allow_truncated_tail=True)
            if isinstance(row, dict) and "fingerprint" in row and "text" in row}


def _row(sample_id: str, messages: list, c: Completion) -> dict:
    if c.failed:
        row = GenerationRow(id=sample_id, prompt=json.dumps(messages, ensure_ascii=False), generated="",
                            input_tokens=0, output_tokens=0, hit_limit=False, latency_s=None, ttft_s=None,
                            tpot_s=None, timed_matches=None, error=c.error, attempts=c.attempts)
        return row.to_json()
    n_out = c.output_tokens
    row = GenerationRow(id=sample_id, prompt=json.dumps(messages, ensure_ascii=False), generated=c.text,
                        input_tokens=c.input_tokens, output_tokens=n_out, hit_limit=c.finish_reason == "length",
                        latency_s=c.latency_s, ttft_s=c.ttft_s,
                        tpot_s=(c.latency_s - c.ttft_s) / (n_out - 1) if n_out > 1 else None, timed_matches=None,
                        finish_reason=c.finish_reason, attempts=c.attempts)
    return row.to_json()


# --------------------------------------------------------------------------- the stage


def evaluate_endpoint_cell(settings: dict, eval_file, generations_file, info_file, config_hash: str | None, *,
                           state_dir: str | Path, served_manifest: str | Path | None = None,
                           progress: bool = True) -> GenerationRecord:
    """Generate every eval sample of one endpoint cell; write generations_file and info_file.

    ``settings``: ``cell``, ``model`` (the entry, with its api block), ``task`` (name, kind,
    max_new_tokens), ``enable_thinking``. ``state_dir``: where the endpoint's shared limits live.
    ``served_manifest``: the manifest of the model entry api.serve names."""
    from tqdm.auto import tqdm

    from ftmatrix.evaluate import read_eval_rows

    entry, task = settings["model"], settings["task"]
    max_tokens = int(task["max_new_tokens"])
    rows = read_eval_rows(eval_file)
    out_dir = Path(generations_file).parent
    store_path = out_dir / RESPONSES
    serve = entry["api"].get("serve")

    # The requests, and which of them were answered before (no server is started for those).
    served = identity = None
    if serve:
        from ftmatrix.evaluate import read_manifest

        if not served_manifest:
            raise ModelError(f"cell {settings['cell']}: api.serve names {serve['model']!r} but its manifest is "
                             f"not among the job's inputs; run the cell through Snakemake.")
        manifest = read_manifest(served_manifest)
        served = manifest.path
        # A server started here has a new port each time: its requests are fingerprinted by what
        # it serves instead.
        identity = json.dumps([serve["model"], manifest.id, manifest.resolved_revision, "transformers serve"])
        extra = dict(entry["api"].get("extra_body") or {})
        extra.setdefault("chat_template_kwargs", {"enable_thinking": bool(settings["enable_thinking"])})
        entry = {**entry, "api": {**entry["api"], "extra_body": extra}}
        endpoint = Endpoint.from_entry(entry, base_url="http://127.0.0.1:0/v1", model_id=served)
    else:
        endpoint = Endpoint.from_entry(entry)
    fingerprints = {row["id"]: request_fingerprint(endpoint, row["prompt"], max_tokens, identity) for row in rows}
    saved = load_responses(store_path)
    done: dict[str, Completion] = {}
    for row in rows:
        hit = saved.get(fingerprints[row["id"]])
        if hit:
            done[row["id"]] = Completion(id=row["id"], text=hit["text"], input_tokens=hit["input_tokens"],
                                         output_tokens=hit["output_tokens"], finish_reason=hit["finish_reason"],
                                         latency_s=hit["latency_s"], ttft_s=hit["ttft_s"],
                                         attempts=hit.get("attempts", 1))
    resumed = len(done)
    if resumed:
        log.info("%s: %d of %d responses already saved; sending the other %d", settings["cell"], resumed,
                 len(rows), len(rows) - resumed)
    todo = [(row["id"], row["prompt"], max_tokens) for row in rows if row["id"] not in done]

    with contextlib.ExitStack() as stack:
        startup_s = 0.0
        if serve and todo:
            port = free_port()
            base_url = f"http://127.0.0.1:{port}/v1"
            endpoint = Endpoint.from_entry(entry, base_url=base_url, model_id=served)
            startup_s = stack.enter_context(running_server(
                transformers_serve_command(served, port), base_url, out_dir / "server.log",
                timeout_s=float(serve.get("startup_timeout_s", 300)), what=f"transformers serve of {served}"))
        client = EndpointClient(endpoint, state_dir) if todo else None
        bar = tqdm(total=len(rows), initial=resumed, unit="sample", desc=f"endpoint {settings['cell']}",
                   disable=not progress, dynamic_ncols=True)
        sent = 0
        started = time.perf_counter()
        store_path.parent.mkdir(parents=True, exist_ok=True)
        with open(store_path, "a", encoding="utf-8") as store:
            def keep(c: Completion):
                nonlocal sent
                sent += 1
                done[c.id] = c
                if not c.failed:
                    # Saved the moment it arrives: a killed job never pays for it again.
                    store.write(json.dumps({
                        "fingerprint": fingerprints[c.id], "id": c.id, "text": c.text,
                        "input_tokens": c.input_tokens, "output_tokens": c.output_tokens,
                        "finish_reason": c.finish_reason, "latency_s": c.latency_s, "ttft_s": c.ttft_s,
                        "attempts": c.attempts, "saved_at": round(time.time(), 3)}, ensure_ascii=False) + "\n")
                    store.flush()
                bar.update(1)

            if todo:
                run_requests(client, todo, keep)
        bar.close()
        wall_s = time.perf_counter() - started

    prompts = {row["id"]: row["prompt"] for row in rows}
    ordered = [_row(row["id"], prompts[row["id"]], done[row["id"]]) for row in rows]
    io.write_jsonl(generations_file, ordered)
    ok = [c for c in done.values() if not c.failed]
    failed = len(rows) - len(ok)
    tokens_in = sum(c.input_tokens for c in ok)
    tokens_out = sum(c.output_tokens for c in ok)
    record = GenerationRecord(
        cell=settings["cell"],
        model={"name": entry["name"], "id": endpoint.model, "revision": None, "resolved_revision": None,
               "path": served, "params": None, "trust_remote_code": False},
        method="base", trained_dir=None, adapter=None, merge_lora=None,
        enable_thinking=bool(settings["enable_thinking"]),
        precision="fp32" if serve else "unknown", precision_requested="endpoint", device="api", threads=1,
        batch_size=1, max_new_tokens=max_tokens,
        decoding=Decoding(do_sample=False, num_beams=1, stop_tokens=[], stop_token_ids=[]),
        n=len(rows), n_timed=len(ok), latency_samples=None, warmup=0, timed_mismatches=0,
        hit_limit=sum(1 for c in ok if c.finish_reason == "length"), generated_this_run=sent, resumed_samples=resumed,
        load_s=round(startup_s, 4), tokenize_s=0.0, wall_s=round(wall_s, 4), quality_pass_s=round(wall_s, 4),
        timed_pass_s=0.0, samples_per_s=(sent / wall_s) if wall_s > 0 and sent else None,
        provenance=provenance.record(config_hash, device=provenance.device_info(),
                                     eval_file={"path": str(eval_file), "fingerprint": io.file_sha256(eval_file, 16)}),
        engine="openai",
        endpoint={**endpoint.describe(), "served": ({"model": serve["model"], "server": "transformers serve",
                                                      "folder": served} if serve else None)},
        failed=failed,
        usage={"input_tokens": tokens_in, "output_tokens": tokens_out, "samples": len(ok),
               "attempts": sum(c.attempts for c in done.values())},
    )
    record.write(info_file)
    lat = [c.latency_s for c in ok]
    log.info("%s: %d samples (%d sent now, %d from saved responses), %d failed, in %.1f s; median latency %s; "
             "%d input + %d output tokens", settings["cell"], len(rows), sent, resumed, failed, wall_s,
             f"{statistics.median(lat):.3f} s" if lat else "n/a", tokens_in, tokens_out)
    return record
