"""Endpoint models (source: api) against a real OpenAI-compatible server.

The server is `transformers serve` of a tiny Qwen3 (real architecture, the real Qwen3
tokenizer) in this environment, started the way a demo job starts it
(ftmatrix.endpoint.running_server); faults come from tests/fault_proxy.py on 127.0.0.1 in
front of it. Checked: the served answers are the local transformers evaluation's; every
fault is retried into the clean answer; a sample that keeps failing is recorded as failed
and left out of scoring; a wrong key stops at once naming the entry and the variable, never
the key; a rerun sends nothing twice; the endpoint's limits hold across processes.

A server that cannot start fails these tests (it is part of the project's own environment).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from ftmatrix.endpoint import evaluate_endpoint_cell, free_port, running_server, transformers_serve_command
from ftmatrix.engines.openai_endpoint import Endpoint, EndpointClient, EndpointStop
from ftmatrix.records import GenerationRecord
from tests.fault_proxy import FaultProxy

QUESTIONS = ["What is 2 + 3?", "Name a colour of the sky.", "Which is larger, 7 or 9?", "Spell 'cat' backwards.",
             "Is ice cold?", "Say hello."]
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(tiny_qwen3, tmp_path_factory):
    """`transformers serve` of the tiny model on a free port of 127.0.0.1."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_file = tmp_path_factory.mktemp("serve") / "server.log"
    with running_server(transformers_serve_command(tiny_qwen3, port), base_url, log_file, timeout_s=240,
                        what="transformers serve"):
        yield {"base_url": base_url, "upstream": f"http://127.0.0.1:{port}", "model": str(tiny_qwen3),
               "folder": tiny_qwen3}


def endpoint(base_url: str, model: str, **overrides) -> Endpoint:
    values = dict(name="tiny-api", base_url=base_url, model=model, key_env=None, timeout_s=5, max_retries=3,
                  backoff_s=0.05, requests_per_minute=6000, max_concurrency=2,
                  extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    values.update(overrides)
    return Endpoint(**values)


def messages(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def local_answers(folder: Path) -> list[str]:
    """The reference: the local evaluation's generator on the same prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftmatrix.evaluate import Generator, Sample, render_prompt

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    gen = Generator(model, tokenizer, MAX_TOKENS, "cpu")
    out = []
    for i, q in enumerate(QUESTIONS):
        text = render_prompt(tokenizer, messages(q), False)
        out.append(gen.batch([Sample(i, str(i), text, tokenizer(text, add_special_tokens=False)["input_ids"])])[0])
    return out


def write_eval(path: Path, n: int) -> Path:
    """ARC-kind eval rows (the registered kind's own reading of hub-format rows)."""
    from ftmatrix.io import write_jsonl
    from ftmatrix.tasks import get_task

    rows = [{"id": f"q{i}", "question": QUESTIONS[i % len(QUESTIONS)] + f" ({i})",
             "choices": {"text": ["red", "blue", "green", "grey"], "label": ["A", "B", "C", "D"]},
             "answerKey": "B"} for i in range(n)]
    write_jsonl(path, get_task("arc").to_examples(rows, str(path)))
    return path


def cell_settings(base_url: str, model: str, **api) -> dict:
    entry = {"name": "tiny-api", "source": "api", "finetune": False, "params_b": 0.001,
             "api": {"base_url": base_url, "model": model, "key_env": None, "max_concurrency": 1,
                     "requests_per_minute": 6000, "timeout_s": 5, "max_retries": 2, "backoff_s": 0.05,
                     "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}, "serve": None, **api}}
    return {"cell": "tiny-api/base/r0/none/seed0/arc", "model": entry,
            "task": {"name": "arc", "kind": "arc", "max_new_tokens": MAX_TOKENS}, "enable_thinking": False}


def test_served_answers_are_the_local_evaluations(server, tmp_path):
    client = EndpointClient(endpoint(server["base_url"], server["model"]), tmp_path)
    local = local_answers(server["folder"])
    for question, reference in zip(QUESTIONS, local):
        got = client.complete("x", messages(question), MAX_TOKENS)
        assert got.error is None
        assert got.text == reference.text
        assert got.output_tokens == len(reference.tokens)
        assert got.finish_reason == ("length" if reference.hit_limit else "stop")
        assert 0 < got.ttft_s <= got.latency_s


@pytest.mark.parametrize("fault", ["429:1", "503:1", "500", "stall:8", "stall_mid:8", "malformed", "cut"])
def test_each_fault_is_retried_into_the_clean_answer(server, tmp_path, fault):
    clean = EndpointClient(endpoint(server["base_url"], server["model"]), tmp_path / "a").complete(
        "x", messages(QUESTIONS[0]), MAX_TOKENS)
    with FaultProxy(server["upstream"], plan=[fault]) as proxy:
        client = EndpointClient(endpoint(proxy.base_url, server["model"], timeout_s=3), tmp_path / "b")
        started = time.perf_counter()
        got = client.complete("x", messages(QUESTIONS[0]), MAX_TOKENS)
        elapsed = time.perf_counter() - started
    assert got.error is None, got.error
    assert (got.text, got.output_tokens, got.attempts) == (clean.text, clean.output_tokens, 2)
    assert [e["fault"] for e in proxy.log] == [fault, "pass"]
    if fault.startswith(("429", "503")):
        assert elapsed >= 1.0, "Retry-After was not honoured"


def test_a_sample_that_keeps_failing_is_recorded_and_not_scored(server, tmp_path):
    from ftmatrix.scoring import score_cell

    eval_file = write_eval(tmp_path / "eval.jsonl", 3)
    out = tmp_path / "cell"
    # max_retries 2: three attempts of the first sample fail, the others pass.
    with FaultProxy(server["upstream"], plan=["500", "500", "500"]) as proxy:
        record = evaluate_endpoint_cell(cell_settings(proxy.base_url, server["model"]), eval_file,
                                        out / "generations.jsonl", out / "generation.json", None,
                                        state_dir=tmp_path / "state", progress=False)
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]          # never dropped
    assert rows[0]["error"].startswith("failed after 3 attempts") and rows[0]["attempts"] == 3
    assert all("error" not in r for r in rows[1:])
    assert record.failed == 1 and record.engine == "openai"
    assert GenerationRecord.read(out / "generation.json").failed == 1
    settings = {"task": {"name": "arc", "kind": "arc"}, "bootstrap_resamples": 1000, "bootstrap_seed": 0,
                "confidence": 0.95, "grading": "lenient"}
    metrics = score_cell(settings, out / "generations.jsonl", out / "generation.json", eval_file,
                         out / "predictions.jsonl", out / "metrics.json", None)
    assert metrics.n == 2                                          # not scored as an empty answer
    assert metrics.generation.failed == 1
    assert [json.loads(line)["id"] for line in (out / "predictions.jsonl").read_text().splitlines()] == ["q1", "q2"]


def test_a_wrong_key_stops_at_once_naming_the_entry_and_the_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_API_KEY", "sk-wrong-0123456789")
    eval_file = write_eval(tmp_path / "eval.jsonl", 4)
    out = tmp_path / "cell"
    with FaultProxy(server["upstream"], key="sk-right") as proxy:
        with pytest.raises(EndpointStop) as stop:
            evaluate_endpoint_cell(cell_settings(proxy.base_url, server["model"], key_env="TINY_API_KEY"), eval_file,
                                   out / "generations.jsonl", out / "generation.json", None,
                                   state_dir=tmp_path / "state", progress=False)
    message = str(stop.value)
    assert "'tiny-api'" in message and "TINY_API_KEY" in message and "401" in message
    assert "sk-wrong" not in message
    assert len(proxy.log) == 1                                     # no retry of a refused key
    assert not (out / "generations.jsonl").exists()


def test_a_rerun_sends_no_request_twice(server, tmp_path):
    out = tmp_path / "cell"
    state = tmp_path / "state"
    eval_file = write_eval(tmp_path / "eval.jsonl", 4)
    # The first run is stopped after two answers (a refusal, as a revoked key would be).
    with FaultProxy(server["upstream"], plan=["pass", "pass", "401"]) as proxy:
        settings = cell_settings(proxy.base_url, server["model"])

        def run(file):
            return evaluate_endpoint_cell(settings, file, out / "generations.jsonl", out / "generation.json", None,
                                          state_dir=state, progress=False)

        with pytest.raises(EndpointStop):
            run(eval_file)
        assert len((out / "responses.jsonl").read_text().splitlines()) == 2
        assert len(proxy.log) == 3
        # The rerun sends only the two samples not answered yet ...
        record = run(eval_file)
        assert (len(proxy.log), record.resumed_samples, record.generated_this_run) == (5, 2, 2)
        # ... and a longer eval file only its new samples.
        record = run(write_eval(tmp_path / "eval.jsonl", 6))
        assert (len(proxy.log), record.resumed_samples, record.generated_this_run) == (7, 4, 2)
    assert record.failed == 0 and record.usage["samples"] == 6


def _send(base_url: str, model: str, state_dir: str, n: int, out) -> None:
    e = endpoint(base_url, model, max_concurrency=1, requests_per_minute=120)
    client = EndpointClient(e, state_dir)
    from ftmatrix.engines.openai_endpoint import run_requests

    done = []
    run_requests(client, [(str(i), messages(QUESTIONS[i % 6]), 2) for i in range(n)], done.append, workers=3)
    out.put(sum(1 for c in done if c.error is None))


def test_limits_hold_across_processes(server, tmp_path):
    """Two processes (two cells of one endpoint) each with three workers: never more than
    max_concurrency = 1 request in flight, and no more than requests_per_minute = 120 (2 a
    second, bursts of 2) started."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with FaultProxy(server["upstream"]) as proxy:
        started = time.perf_counter()
        procs = [context.Process(target=_send, args=(proxy.base_url, server["model"], str(tmp_path), 4, results))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        elapsed = time.perf_counter() - started
    assert [results.get(timeout=5) for _ in procs] == [4, 4]
    assert len(proxy.log) == 8
    assert proxy.peak == 1
    assert elapsed >= (8 - 2) / 2.0 - 0.2
