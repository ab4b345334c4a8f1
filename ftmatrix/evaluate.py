"""Stage 3a: greedy generation for one cell, with per-sample latency.

``evaluate_cell`` loads the variant (base model, fully fine-tuned weights, or base plus
LoRA adapter), renders every evaluation prompt with the model's chat template, and
generates greedily until the model's end-of-turn token or the task's ``max_new_tokens``.
It writes ``generations.jsonl`` (one row per sample) and ``generation.json`` (settings
and summary). Scoring (ftmatrix.scoring) reads these files only.

Two passes, one meaning each:

* **Quality** comes from the batched pass over every sample (``evaluate.batch_size``,
  left padding). Batches are fixed once per cell (prompts sorted longest first, then cut
  into batches), so a resumed run generates every sample in the same batch as an
  uninterrupted one.
* **Latency** comes from a second generation of the timed samples (the first
  ``latency_samples`` of the eval file; null = all) at batch size 1, the reference study's
  setting, after ``warmup`` untimed generations. Its text is compared with the batched
  text: greedy decoding in fp32 gives the same tokens, and a difference (possible in
  bf16/fp16, where padding changes the rounding) is recorded per sample
  (``timed_matches``) and counted in ``generation.json``; quality never uses it. When
  ``batch_size`` is 1 the quality pass is itself the timed pass, so nothing runs twice.

Definitions (per sample):

* ``input_tokens``: tokens of the rendered prompt (chat template, generation prompt).
* ``output_tokens``: generated tokens up to and including the end-of-turn token; a
  sample that never produced one has ``max_new_tokens`` and ``hit_limit: true``.
* ``generated``: the text of those tokens without the end-of-turn token, decoded with
  special tokens skipped (what lm-evaluation-harness compares too).
* ``latency_s``: wall-clock seconds from handing the token ids to the model until the
  decoded text is ready (the device is synchronised before each clock reading).
* ``ttft_s``: seconds from the same start until the first generated token reaches the
  host (the prompt's prefill plus one decoding step).
* ``tpot_s``: (latency_s - ttft_s) / (output_tokens - 1), the time per further token;
  null when only one token was generated.

Resuming: every finished sample is appended and flushed to
``generations.partial.jsonl`` beside the outputs (not a declared output, so Snakemake
does not delete it before a rerun), together with ``generations.partial.key``, which
fingerprints everything that decides the generations. A rerun with the same key skips
the finished ids (a last line cut short by a kill is dropped); a different key starts
over. At the end the complete file is moved into place atomically, then
``generation.json`` is written and the partial files are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ftmatrix import io, provenance
from ftmatrix.engines import engine_of
from ftmatrix.errors import DataError, ModelError
from ftmatrix.records import Decoding, GenerationRecord, GenerationRow, ModelManifest

log = logging.getLogger("ftmatrix.evaluate")

PARTIAL_SUFFIX = ".partial.jsonl"
KEY_SUFFIX = ".partial.key"


# --------------------------------------------------------------------------- settings

@dataclass
class EvalSettings:
    """The parts of the evaluation rule's settings (slices of the validated config) that decide
    a generation run."""

    cell: str
    model: dict
    method: str
    task: dict
    max_new_tokens: int
    batch_size: int
    latency_samples: int | None
    warmup: int
    merge_lora: bool
    precision: str
    enable_thinking: bool
    engine: str = "transformers"     # the quality pass's engine (ftmatrix.engines): transformers, vllm

    @classmethod
    def from_settings(cls, settings: dict) -> "EvalSettings":
        ev = settings["evaluate"]
        task = settings["task"]
        return cls(
            cell=settings["cell"],
            model=settings["model"],
            method=settings["method"],
            task=task,
            max_new_tokens=int(task["max_new_tokens"]),
            batch_size=int(ev["batch_size"]),
            latency_samples=ev["latency_samples"],
            warmup=int(ev["warmup"]),
            merge_lora=bool(ev["merge_lora"]),
            precision=ev["precision"],
            enable_thinking=bool(settings["enable_thinking"]),
            engine=engine_of(settings["model"], ev),
        )


# --------------------------------------------------------------------------- loading

def read_manifest(path: str | Path) -> ModelManifest:
    """The model manifest written by the data stage, with ``path`` resolved to the model folder."""
    import dataclasses

    from ftmatrix.models import load_manifest, model_path

    return dataclasses.replace(load_manifest(path), path=str(model_path(path)))


def _check_safetensors(folder: Path, what: str, pattern: str = "*.safetensors") -> None:
    if not folder.is_dir():
        raise ModelError(f"{folder}: the {what} folder does not exist; rerun the stage that produces it.")
    if not any(folder.glob(pattern)):
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        extra = (f" It holds only pickle weights ({', '.join(pickles[:3])}), which are refused because loading "
                 f"them can run arbitrary code; convert them to safetensors.") if pickles else ""
        raise ModelError(f"{folder}: no {pattern} weights in the {what} folder.{extra}")


def resolve_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """auto: bf16 on a GPU that supports it, fp32 otherwise. Returns 'fp32', 'bf16' or 'fp16'."""
    import torch

    if precision == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return precision


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def load_variant(manifest: ModelManifest, method: str, trained_dir: str | Path | None, *, merge_lora: bool = True,
                 precision: str = "fp32", device: str = "cpu", manifest_file: str | Path = "manifest.json"):
    """Load the model and tokenizer of a variant; returns (model, tokenizer, details)."""
    import torch
    from transformers import AutoTokenizer

    from ftmatrix.models import load_causal_lm

    dtype = getattr(torch, _DTYPES[precision])
    trust = manifest.trust_remote_code
    base_path = Path(manifest.path)
    if method == "full":
        weights = Path(trained_dir) if trained_dir else None
        if weights is None:
            raise ModelError("a full fine-tuned variant needs its trained folder (results/train/<variant>/model).")
        _check_safetensors(weights, "trained model")
    else:
        weights = base_path
        _check_safetensors(weights, f"model ({manifest_file})")
    if method == "lora":
        if not trained_dir:
            raise ModelError("a LoRA variant needs its adapter folder (results/train/<variant>/model).")
        _check_safetensors(Path(trained_dir), "LoRA adapter", "adapter_model.safetensors")
        if not (Path(trained_dir) / "adapter_config.json").is_file():
            raise ModelError(f"{trained_dir}: no adapter_config.json; the LoRA adapter is incomplete — "
                             f"rerun its training job.")
    # The trained folder carries the tokenizer it was trained with; the base folder otherwise.
    has_own_tokenizer = trained_dir and (Path(trained_dir) / "tokenizer_config.json").is_file()
    tok_dir = Path(trained_dir) if has_own_tokenizer else base_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=trust)
        model = load_causal_lm(weights, where=str(manifest_file if method != "full" else weights), dtype=dtype,
                               use_safetensors=True, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{weights}: cannot load the model or tokenizer ({exc}). Check the folder, or rerun "
                         f"the stage that wrote it.") from None
    details = {"weights": str(weights), "tokenizer": str(tok_dir), "adapter": None, "merged": None}
    if method == "lora":
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(trained_dir), is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{trained_dir}: cannot apply the LoRA adapter to {weights} ({exc}); the adapter "
                             f"may belong to another base model — rerun its training job.") from None
        if merge_lora:
            model = model.merge_and_unload()
        details.update(adapter=str(trained_dir), merged=bool(merge_lora))
    model.to(device)
    model.eval()
    return model, tokenizer, details


def stop_token_ids(model, tokenizer) -> list[int]:
    """The model's end-of-turn token(s): generation_config's eos, else the tokenizer's, plus <|im_end|> if known."""
    ids: list[int] = []
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    for value in eos if isinstance(eos, (list, tuple)) else [eos]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    known = "<|im_end|>" in tokenizer.get_added_vocab() or "<|im_end|>" in tokenizer.get_vocab()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if known else None
    if im_end is not None and im_end not in ids:
        ids.append(int(im_end))
    if not ids:
        raise ModelError("the model has no end-of-turn token (no eos_token_id in its generation_config or "
                         "tokenizer); add one to the model folder.")
    return ids


def render_prompt(tokenizer, messages: list[dict], enable_thinking: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         enable_thinking=enable_thinking)


# --------------------------------------------------------------------------- generation

@dataclass
class Sample:
    index: int
    id: str
    prompt: str
    input_ids: list[int]


@dataclass
class Output:
    tokens: list[int]          # generated tokens up to and including the stop token
    text: str
    hit_limit: bool
    latency_s: float | None = None
    ttft_s: float | None = None


class Generator:
    """Greedy generation with the model's stop tokens, batched (left padding) or timed at batch size 1."""

    def __init__(self, model, tokenizer, max_new_tokens: int, device: str):
        import torch
        from transformers import GenerationConfig

        self.torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.stop_ids = stop_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = self.stop_ids[0]
        self.pad_id = int(pad)
        self.max_new_tokens = max_new_tokens
        # A fresh config, so sampling defaults shipped with a model (temperature, top_p, top_k)
        # can neither apply nor warn: greedy, one beam, our stop tokens and length.
        self.config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                       eos_token_id=self.stop_ids, pad_token_id=self.pad_id, use_cache=True)
        model.generation_config = self.config

    def _sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def _finish(self, row_tokens: Sequence[int]) -> Output:
        tokens = list(row_tokens)
        stop_at = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        if stop_at is None:
            kept, body, hit = tokens, tokens, True
        else:
            kept, body, hit = tokens[: stop_at + 1], tokens[:stop_at], False
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        return Output(tokens=kept, text=text, hit_limit=hit)

    def batch(self, samples: Sequence[Sample]) -> list[Output]:
        torch = self.torch
        width = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, s in enumerate(samples):
            ids[row, width - len(s.input_ids):] = torch.tensor(s.input_ids, dtype=torch.long)
            mask[row, width - len(s.input_ids):] = 1
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      generation_config=self.config)
        return [self._finish(row) for row in out[:, width:].tolist()]

    def timed(self, sample: Sample) -> Output:
        torch = self.torch
        clock = _FirstTokenClock(self._sync)
        self._sync()
        start = time.perf_counter()
        ids = torch.tensor([sample.input_ids], dtype=torch.long).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      generation_config=self.config, streamer=clock)
        result = self._finish(out[0, len(sample.input_ids):].tolist())
        self._sync()
        end = time.perf_counter()
        result.latency_s = end - start
        result.ttft_s = (clock.first - start) if clock.first is not None else result.latency_s
        return result


class _FirstTokenClock:
    """A generate() streamer that notes when the first generated token reaches the host.

    generate() hands the prompt to put() first, then each new token (already copied to
    the host, so the device has finished that step)."""

    def __init__(self, sync):
        self.calls = 0
        self.first: float | None = None
        self.sync = sync

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.sync()
            self.first = time.perf_counter()

    def end(self):
        pass


def fixed_batches(samples: Sequence[Sample], batch_size: int) -> list[list[Sample]]:
    """Longest prompts first (little padding; memory trouble shows at once), then cut into batches.
    Depends only on the samples, so a resumed run forms the very same batches."""
    ordered = sorted(samples, key=lambda s: (-len(s.input_ids), s.index))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


# --------------------------------------------------------------------------- resume bookkeeping

def partial_paths(generations_file: str | Path) -> tuple[Path, Path]:
    generations_file = Path(generations_file)
    stem = generations_file.name.removesuffix(".jsonl")
    return (generations_file.with_name(stem + PARTIAL_SUFFIX), generations_file.with_name(stem + KEY_SUFFIX))


def _folder_fingerprint(folder: str | Path | None) -> list | None:
    """Names, sizes and modification times of a folder's files: changes when the folder is rewritten."""
    if not folder:
        return None
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


def run_key(cfg: EvalSettings, manifest: ModelManifest, trained_dir, eval_file, device: str, precision: str) -> str:
    """A fingerprint of everything that decides the generated text and the timing protocol."""
    blob = json.dumps({
        "cell": cfg.cell, "method": cfg.method, "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size, "latency_samples": cfg.latency_samples, "warmup": cfg.warmup,
        "merge_lora": cfg.merge_lora, "precision": precision, "device": device,
        "enable_thinking": cfg.enable_thinking, "engine": cfg.engine,
        "model": {"name": manifest.name, "path": manifest.path, "id": manifest.id,
                  "resolved_revision": manifest.resolved_revision, "revision": manifest.revision},
        "model_files": _folder_fingerprint(manifest.path),
        "trained_files": _folder_fingerprint(trained_dir),
        "eval_file": io.file_sha256(eval_file, 16),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _load_partial(partial: Path, key_file: Path, key: str, valid_ids: set[str]) -> dict[str, dict]:
    """Finished rows from an earlier, interrupted run with the same key; {} when there are none."""
    if not partial.exists() or not key_file.exists() or key_file.read_text().strip() != key:
        partial.unlink(missing_ok=True)
        io.write_text(key_file, key + "\n")
        return {}
    rows = io.read_jsonl(partial, allow_truncated_tail=True)
    done = {row["id"]: row for row in rows if row.get("id") in valid_ids and "generated" in row}
    # Rewrite without a cut-off last line, so appends start on a fresh line.
    io.write_jsonl(partial, done.values())
    return done


# --------------------------------------------------------------------------- the stage

def read_eval_rows(eval_file: str | Path) -> list[dict]:
    rows = io.read_jsonl(eval_file)
    if not rows:
        raise DataError(f"{eval_file}: no evaluation rows; rerun the data stage for this task.")
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("id"), str) or not row["id"]:
            raise DataError(f"{eval_file}, row {number}: missing or empty 'id'; rerun the data stage.")
        if not isinstance(row.get("prompt"), list) or not row["prompt"]:
            raise DataError(f"{eval_file}, row {number} (id {row['id']}): 'prompt' must be a non-empty list "
                            f"of chat messages; rerun the data stage.")
        if row["id"] in seen:
            raise DataError(f"{eval_file}, row {number}: the id {row['id']!r} appears twice; ids must be unique.")
        seen.add(row["id"])
    return rows


def timed_indices(n: int, latency_samples: int | None) -> set[int]:
    """The first ``latency_samples`` samples of the eval file (all when null)."""
    k = n if latency_samples is None else max(0, min(int(latency_samples), n))
    return set(range(k))


def prompt_samples(tokenizer, rows: list[dict], enable_thinking: bool) -> list[Sample]:
    """The eval rows as ``Sample`` objects: each prompt rendered with the chat template and tokenised
    (the quality pass, the timing rounds and every engine start from these ids)."""
    samples = []
    for index, row in enumerate(rows):
        text = render_prompt(tokenizer, row["prompt"], enable_thinking)
        samples.append(Sample(index, row["id"], text, tokenizer(text, add_special_tokens=False)["input_ids"]))
    return samples


def _row(sample: Sample, out: Output, timed: Output | None) -> dict:
    row = GenerationRow(id=sample.id, prompt=sample.prompt, generated=out.text, input_tokens=len(sample.input_ids),
                        output_tokens=len(out.tokens), hit_limit=out.hit_limit, latency_s=None, ttft_s=None,
                        tpot_s=None, timed_matches=None)
    if timed is not None:
        n_out = len(timed.tokens)
        row.latency_s = timed.latency_s
        row.ttft_s = timed.ttft_s
        row.tpot_s = (timed.latency_s - timed.ttft_s) / (n_out - 1) if n_out > 1 else None
        row.timed_matches = timed.tokens == out.tokens
        if not row.timed_matches:
            row.timed_generated = timed.text
            row.timed_output_tokens = n_out
    return row.to_json()


def evaluate_cell(settings: dict, model_manifest, trained_dir, eval_file, generations_file, info_file,
                  config_hash: str | None, threads: int, *, device: str | None = None,
                  progress: bool = True) -> dict:
    """Generate for every eval sample of one cell; write generations_file and info_file. Returns the summary."""
    import torch
    from tqdm.auto import tqdm

    cfg = EvalSettings.from_settings(settings)
    if cfg.method in ("full", "lora") and not trained_dir:
        raise ModelError(f"cell {cfg.cell}: method {cfg.method} needs the trained folder of the variant.")
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(0)
    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    manifest = read_manifest(model_manifest)
    rows = read_eval_rows(eval_file)

    started = time.perf_counter()
    model, tokenizer, details = load_variant(manifest, cfg.method, trained_dir, merge_lora=cfg.merge_lora,
                                             precision=precision, device=device, manifest_file=model_manifest)
    gen = Generator(model, tokenizer, cfg.max_new_tokens, device)
    load_s = time.perf_counter() - started
    tick = time.perf_counter()
    samples = prompt_samples(tokenizer, rows, cfg.enable_thinking)
    tokenize_s = time.perf_counter() - tick
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(s.input_ids) for s in samples)
    if limit and longest + cfg.max_new_tokens > limit:
        log.warning("the longest prompt (%d tokens) plus max_new_tokens (%d) exceeds the model's "
                    "max_position_embeddings (%d)", longest, cfg.max_new_tokens, limit)

    partial, key_file = partial_paths(generations_file)
    key = run_key(cfg, manifest, trained_dir, eval_file, device, precision)
    done = _load_partial(partial, key_file, key, {s.id for s in samples})
    timed = timed_indices(len(samples), cfg.latency_samples)
    resumed = len(done)
    if resumed:
        log.info("resuming %s: %d of %d samples already generated", cfg.cell, resumed, len(samples))

    bar = tqdm(total=len(samples), initial=resumed, unit="sample", desc=f"evaluate {cfg.cell}",
               disable=not progress, dynamic_ncols=True)
    warmed = False
    generated_now = 0
    quality_s = timed_s = 0.0
    gen_started = time.perf_counter()
    if cfg.engine == "vllm":
        # One offline vLLM batch over every sample not generated yet; its ids are decoded here
        # exactly as the transformers engine decodes its own (ftmatrix.engines.vllm_engine).
        from ftmatrix.engines import vllm_engine

        todo = [s for s in samples if s.id not in done]
        if todo:
            out_dir = Path(generations_file).parent
            inputs = vllm_inputs(model, tokenizer, cfg.method, details, out_dir / "vllm-merged")
            release_device(model, device)
            result = vllm_engine.generate(inputs["model_dir"], [s.input_ids for s in todo], cfg.max_new_tokens,
                                          gen.stop_ids, precision=precision, threads=threads, work_dir=out_dir,
                                          log_file=out_dir / "vllm.log", adapter=inputs["adapter"],
                                          adapter_rank=inputs["adapter_rank"])
            quality_s = result["generate_s"]
            load_s += result["load_s"]
            for s, ids in zip(todo, result["tokens"]):
                done[s.id] = _row(s, gen._finish(ids), None)
                generated_now += 1
            bar.update(len(todo))
    with open(partial, "a", encoding="utf-8") as sink:
        for batch in fixed_batches(samples, cfg.batch_size):
            todo = [s for s in batch if s.id not in done]
            if not todo:
                continue
            if not warmed and any(s.index in timed for s in todo):
                for i in range(cfg.warmup):
                    gen.timed(samples[sorted(timed)[i % len(timed)]])
                warmed = True
            tick = time.perf_counter()
            try:
                if cfg.batch_size == 1 and batch[0].index in timed:
                    outs = [gen.timed(batch[0])]      # the quality pass is the timed pass
                    timed_outs = outs
                    timed_s += time.perf_counter() - tick
                else:
                    outs = gen.batch(batch)
                    quality_s += time.perf_counter() - tick
                    tick = time.perf_counter()
                    timed_outs = [gen.timed(s) if (s.index in timed and s.id not in done) else None
                                  for s in batch]
                    timed_s += time.perf_counter() - tick
            except torch.cuda.OutOfMemoryError:
                raise ModelError(f"cell {cfg.cell}: out of GPU memory generating a batch of {len(batch)} "
                                 f"(prompts up to {len(batch[0].input_ids)} tokens, max_new_tokens "
                                 f"{cfg.max_new_tokens}); lower evaluate.batch_size and run again.") from None
            for s, out, t_out in zip(batch, outs, timed_outs):
                if s.id in done:
                    continue
                row = _row(s, out, t_out)
                # Flushed per sample: a killed process loses nothing it has finished.
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
                done[s.id] = row
                generated_now += 1
                bar.update(1)
            os.fsync(sink.fileno())     # and on disk once per batch, against a crash of the machine
    bar.close()
    gen_s = time.perf_counter() - gen_started

    ordered = [done[s.id] for s in samples]
    io.write_jsonl(generations_file, ordered)
    summary = _summary(cfg, manifest, details, ordered, precision, device, gen.stop_ids, tokenizer,
                       load_s=load_s, tokenize_s=tokenize_s, gen_s=gen_s, quality_s=quality_s, timed_s=timed_s,
                       generated_now=generated_now, resumed=resumed,
                       threads=threads, config_hash=config_hash, eval_file=eval_file,
                       model_manifest=model_manifest, trained_dir=trained_dir)
    summary.write(info_file)
    partial.unlink(missing_ok=True)
    key_file.unlink(missing_ok=True)
    lat = [r["latency_s"] for r in ordered if r["latency_s"] is not None]
    log.info("%s: %d samples (%d generated now, %d resumed) in %.1f s, %.2f samples/s; %d timed, "
             "median latency %s; %d hit the %d-token limit", cfg.cell, len(ordered), generated_now, resumed,
             gen_s, summary.samples_per_s or 0.0, len(lat),
             f"{statistics.median(lat):.3f} s" if lat else "n/a", summary.hit_limit, cfg.max_new_tokens)
    return summary


def _summary(cfg: EvalSettings, manifest: ModelManifest, details: dict, rows: list[dict], precision: str,
             device: str, stop_ids: list[int], tokenizer, *, load_s: float, tokenize_s: float, gen_s: float,
             quality_s: float, timed_s: float, generated_now: int, resumed: int,
             threads: int, config_hash, eval_file, model_manifest, trained_dir) -> GenerationRecord:
    timed_rows = [r for r in rows if r["latency_s"] is not None]
    return GenerationRecord(
        cell=cfg.cell,
        model={"name": manifest.name, "id": manifest.id, "revision": manifest.revision,
               "resolved_revision": manifest.resolved_revision, "path": manifest.path,
               "params": manifest.params, "trust_remote_code": manifest.trust_remote_code},
        method=cfg.method,
        trained_dir=str(trained_dir) if trained_dir else None,
        adapter=details.get("adapter"),
        merge_lora=details.get("merged") if cfg.method == "lora" else None,
        enable_thinking=cfg.enable_thinking,
        precision=precision,
        precision_requested=cfg.precision,
        device=device,
        threads=int(threads),
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        decoding=Decoding(do_sample=False, num_beams=1,
                          stop_tokens=[tokenizer.convert_ids_to_tokens(i) for i in stop_ids],
                          stop_token_ids=stop_ids),
        n=len(rows),
        n_timed=len(timed_rows),
        latency_samples=cfg.latency_samples,
        warmup=cfg.warmup,
        timed_mismatches=sum(1 for r in timed_rows if r["timed_matches"] is False),
        hit_limit=sum(1 for r in rows if r["hit_limit"]),
        generated_this_run=generated_now,
        resumed_samples=resumed,
        load_s=round(load_s, 4),
        tokenize_s=round(tokenize_s, 4),
        wall_s=round(gen_s, 4),
        quality_pass_s=round(quality_s, 4),
        timed_pass_s=round(timed_s, 4),
        samples_per_s=(generated_now / gen_s) if gen_s > 0 and generated_now else None,
        provenance=provenance.record(
            config_hash, device=provenance.device_info(),
            eval_file={"path": str(eval_file), "fingerprint": io.file_sha256(eval_file, 16)},
            model_manifest=str(model_manifest)),
        engine=cfg.engine,
    )


def vllm_inputs(model, tokenizer, method: str, details: dict, merged_dir: Path) -> dict:
    """What vLLM loads for a variant: ``{'model_dir', 'adapter', 'adapter_rank'}``. The base or fully
    fine-tuned weights as they are; a LoRA variant merged into its base (the model load_variant
    merged, saved as safetensors in ``merged_dir``) when ``evaluate.merge_lora`` is on, else the
    base weights with the adapter applied by vLLM's own LoRA support."""
    if method != "lora":
        return {"model_dir": Path(details["weights"]), "adapter": None, "adapter_rank": None}
    if not details.get("merged"):
        adapter = Path(details["adapter"])
        config = json.loads((adapter / "adapter_config.json").read_text())
        return {"model_dir": Path(details["weights"]), "adapter": adapter, "adapter_rank": int(config["r"])}
    merged_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.save_pretrained(merged_dir)
    return {"model_dir": merged_dir, "adapter": None, "adapter_rank": None}


def release_device(model, device: str) -> None:
    """Move a model the job no longer generates with off the GPU, so the vLLM process it starts
    next finds the GPU's memory free (vLLM claims a share of the whole GPU)."""
    if device.startswith("cuda"):
        import torch

        model.to("cpu")
        torch.cuda.empty_cache()
