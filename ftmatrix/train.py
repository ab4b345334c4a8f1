"""Stage 2: fine-tune one variant (full fine-tuning, or LoRA at rank r) with TRL.

``train_variant`` is the whole job, read top to bottom:

1. read the model manifest and the example rows (prompt / completion chat messages);
2. check that the chat template renders the evaluation prompt as a prefix of the training
   text (so the model trains on exactly the context it will see), and count the examples
   that ``max_length`` truncates or leaves without a completion token;
3. build TRL's ``SFTTrainer`` (+ PEFT's ``LoraConfig`` for LoRA): loss on completion tokens
   only, the precision the device supports, checkpoints every ``save_steps``;
4. switch to padding-free batches where an estimate of an epoch's work says they are cheaper
   and a check on a few rows shows they give the same loss as padded batches (on a CPU, TRL's
   LM head scores only the positions that carry a label, as it does on a GPU: ``score_labelled_only``);
5. held-out loss before, train (resuming from the last checkpoint), held-out loss after;
6. write the model into a temporary folder and move it into place, then
   ``train_metrics.json`` last, then drop the checkpoints.

torch, transformers, trl, peft and datasets are imported inside functions, so importing
this module is cheap.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ftmatrix import provenance
from ftmatrix.config import TRAIN_BOOKKEEPING_KEYS
from ftmatrix.config import config_hash as stable_hash
from ftmatrix.errors import ConfigError, DataError, FtmatrixError, ModelError
from ftmatrix.grid import variant_from_path
from ftmatrix.io import file_sha256, read_json, read_jsonl, replace_dir, write_json
from ftmatrix.models import load_manifest, model_path
from ftmatrix.records import TrainMetrics

log = logging.getLogger("ftmatrix.train")

# Written into the checkpoint folder: checkpoints are only resumed by the same job.
RUN_FILE = "run.json"
# Seconds of training reached at each saved step, so a resumed job reports its total time.
ELAPSED_FILE = "elapsed.json"
# Relative tolerance on the loss when padding-free batches are compared with padded ones.
PADDING_FREE_RTOL = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 2e-2}


class TrainingDiverged(FtmatrixError):
    """The training loss (or gradient norm) became NaN or infinite."""


# --------------------------------------------------------------------------- inputs


def read_examples(path: str | Path, limit: int | None = None) -> list[dict]:
    """Prompt/completion rows of a task file, checked field by field (errors name file and line)."""
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path}: the file has no examples; prepare the task again (snakemake data).")
    examples = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}, line {number}"
        for key in ("prompt", "completion"):
            messages = row.get(key)
            if not isinstance(messages, list) or not messages:
                raise DataError(f"{where}: {key!r} must be a non-empty list of chat messages, "
                                f"got {type(messages).__name__}; prepare the task again.")
            for message in messages:
                if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                        and isinstance(message.get("content"), str)):
                    raise DataError(f"{where}: every message in {key!r} needs a string 'role' and 'content'; "
                                    f"got {message!r}.")
        if row["completion"][-1]["role"] != "assistant":
            raise DataError(f"{where}: the completion must end with an assistant message.")
        if row["prompt"][-1]["role"] not in ("user", "tool"):
            raise DataError(f"{where}: the prompt must end with a user message, not {row['prompt'][-1]['role']!r}.")
        examples.append({"prompt": row["prompt"], "completion": row["completion"]})
        if limit is not None and len(examples) >= limit:
            break
    return examples


# --------------------------------------------------------------------------- settings


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), so bf16 training and
    inference run at speed rather than emulated."""
    import torch

    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def choose_precision(requested: str = "auto") -> tuple[str, str]:
    """(precision, device): auto is bf16 on a GPU that supports it, fp32 on CPU; bf16 when asked
    on a GPU or a CPU that computes in bf16 (mixed precision: fp32 weights, bf16 autocast)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16_ok = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
    if requested == "auto":
        return ("bf16" if device == "cuda" and bf16_ok else "fp32"), device
    if requested == "bf16" and not bf16_ok:
        raise ConfigError(f"train.precision is bf16 but this {device} does not support bf16 training"
                          f"{' (no AVX512-BF16 or AMX instructions)' if device == 'cpu' else ''}; "
                          f"use precision: auto (fp32 here) or run on a GPU with bf16.")
    if requested == "fp16" and device != "cuda":
        raise ConfigError("train.precision is fp16, which needs a GPU; use precision: auto (fp32 on CPU).")
    return requested, device


def learning_rate(settings: dict) -> float:
    return float(settings["train"]["learning_rate"][settings["method"]])


def lora_alpha(rank: int, lora: dict) -> float:
    """fixed: lora_alpha = value; proportional: value × r (the schema fills each rule's default value)."""
    alpha = lora["alpha"]
    if alpha["rule"] == "proportional":
        return alpha["value"] * rank
    return alpha["value"]


def lora_config(rank: int, lora: dict):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=lora_alpha(rank, lora), lora_dropout=lora["dropout"],
                      use_rslora=lora["use_rslora"], target_modules=lora["target_modules"],
                      bias="none", task_type="CAUSAL_LM")


def stable_adapter_config(path: Path) -> None:
    """Write PEFT's adapter_config.json with its module lists sorted. PEFT keeps the modules it
    adapts as a set and saves them in the set's order, which follows Python's per-process string
    hashing: without this, two runs of the same training write the same weights but adapter
    configs that differ byte for byte."""
    config = json.loads(path.read_text())
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def sft_config(settings: dict, checkpoint_dir: str | Path, precision: str, device: str):
    """TRL's SFTConfig from the study's ``train`` section."""
    from trl import SFTConfig

    train = settings["train"]
    seed = settings["seed"]
    data_seed = train["data_seed"]
    return SFTConfig(
        output_dir=str(checkpoint_dir),
        # data
        max_length=train["max_length"],
        completion_only_loss=True,
        # Padded batches here; train_variant switches the collator to padding-free batches
        # after checking they give the same loss (TRL refuses padding_free with max_length).
        padding_free=False,
        packing=False,
        dataset_num_proc=None,
        # optimisation
        learning_rate=learning_rate(settings),
        num_train_epochs=train["epochs"],
        max_steps=train["max_steps"],
        per_device_train_batch_size=train["per_device_batch_size"],
        per_device_eval_batch_size=train["per_device_batch_size"],
        gradient_accumulation_steps=train["gradient_accumulation_steps"],
        lr_scheduler_type=train["lr_scheduler"],
        warmup_steps=float(train["warmup_ratio"]),  # a float < 1 is a ratio of the total steps
        weight_decay=train["weight_decay"],
        activation_checkpointing=train["gradient_checkpointing"],
        train_sampling_strategy="group_by_length" if train["group_by_length"] else "random",
        seed=seed,
        data_seed=seed if data_seed is None else data_seed,
        # precision and device
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        # checkpoints (resumed by train_variant) and logs
        save_strategy="steps",
        save_steps=train["save_steps"],
        save_total_limit=train["save_total_limit"],
        save_only_model=False,
        logging_steps=train["logging_steps"],
        logging_nan_inf_filter=False,  # a NaN loss must reach the guard, not be averaged away
        include_num_input_tokens_seen="non_padding",
        report_to="none",  # TensorBoard, when asked, is added as a callback with its own folder
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def settings_hash(settings: dict) -> str:
    """The identity of a run: its settings without the bookkeeping (checkpoint cadence,
    logging), which a resumed run may change without changing what it learns."""
    train = {k: v for k, v in settings["train"].items() if k not in TRAIN_BOOKKEEPING_KEYS}
    return stable_hash({**settings, "train": train})


# --------------------------------------------------------------------------- data checks


def render_check(tokenizer, examples: list[dict], enable_thinking: bool, max_length: int, where: str) -> dict:
    """Check the template and measure lengths the way TRL will tokenize.

    The evaluation prompt (``add_generation_prompt=True``) must be a prefix of the rendered
    prompt + completion; otherwise the model would train on a context it never sees at
    evaluation. Returns counts of examples longer than ``max_length`` ("truncated") and of
    those whose prompt alone fills ``max_length`` ("no_completion_left", which TRL drops).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{where}: the tokenizer has no chat template; the model folder must ship one "
                         f"(tokenizer_config.json or chat_template.jinja).")
    kwargs = {"enable_thinking": enable_thinking}
    prompts, fulls = [], []
    for i, example in enumerate(examples):
        prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True, **kwargs)
        full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False, **kwargs)
        if not full.startswith(prompt):
            raise ModelError(f"{where}: the chat template renders example {i + 1}'s prompt (as evaluation sees it, "
                             f"enable_thinking={enable_thinking}) differently from the start of prompt + completion "
                             f"(as training sees it):\n  prompt: {prompt[-80:]!r}\n  full:   "
                             f"{full[len(prompt) - 80:len(prompt) + 20]!r}\nUse a model whose chat template renders "
                             f"both the same way.")
        prompts.append(prompt)
        fulls.append(full)
    prompt_lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    full_lengths = [len(ids) for ids in tokenizer(fulls, add_special_tokens=False)["input_ids"]]
    return {
        "examples": len(examples),
        "truncated": sum(n > max_length for n in full_lengths),
        "no_completion_left": sum(p >= max_length for p in prompt_lengths),
        "longest": max(full_lengths),
        "longest_prompt": max(prompt_lengths),
        "tokens": sum(full_lengths),
    }


def to_dataset(examples: list[dict], enable_thinking: bool):
    """A datasets.Dataset TRL renders with the tokenizer's chat template (and these template kwargs)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"],
                               "chat_template_kwargs": {"enable_thinking": enable_thinking}} for e in examples])


# --------------------------------------------------------------------------- callbacks


def guard_callback(save_steps: int):
    from transformers import TrainerCallback

    class DivergenceGuard(TrainerCallback):
        """Stop with a clear message on a NaN/inf loss or gradient norm, checked before every save."""

        def on_step_end(self, args, state, control, **kwargs):
            # Log (and so check) at every step that saves, so no diverged weights are checkpointed.
            if state.global_step % save_steps == 0:
                control.should_log = True
            # The last step is logged (final loss) but not checkpointed: the model is written next.
            if state.global_step >= state.max_steps:
                control.should_log = True
                control.should_save = False
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value):
                    raise TrainingDiverged(
                        f"training diverged at step {state.global_step}: the {key.replace('_', ' ')} is {value}. "
                        f"Lower train.learning_rate (now {args.learning_rate:g}) or use precision: fp32, and "
                        f"run again (checkpoints of other settings are discarded); if it persists, check the "
                        f"model's weights.")

    return DivergenceGuard()


def _elapsed_callback(ledger: Path, already: float):
    from transformers import TrainerCallback

    class ElapsedLedger(TrainerCallback):
        """Record the training seconds reached at each checkpoint (a resumed job adds them up)."""

        def __init__(self):
            self.started = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def elapsed(self) -> float:
            return already + (time.perf_counter() - self.started if self.started else 0.0)

        def on_save(self, args, state, control, **kwargs):
            data = _read_json_or_empty(ledger)
            data[str(state.global_step)] = self.elapsed()
            write_json(ledger, data)

    return ElapsedLedger()


def _read_json_or_empty(path: Path) -> dict:
    try:
        return read_json(path) if path.is_file() else {}
    except DataError:
        return {}


# --------------------------------------------------------------------------- checkpoints


def _complete(checkpoint: Path) -> bool:
    """A checkpoint is complete when its trainer state (written last) parses and its parts exist."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    has_weights = any(checkpoint.glob("*.safetensors"))
    return has_weights and (checkpoint / "optimizer.pt").is_file() and (checkpoint / "scheduler.pt").is_file()


def resumable_checkpoint(checkpoint_dir: Path, run: dict) -> Path | None:
    """The newest complete checkpoint of this same job; stale or broken ones are removed."""
    if not checkpoint_dir.is_dir():
        return None
    run_file = checkpoint_dir / RUN_FILE
    previous = _read_json_or_empty(run_file)
    if previous.get("resume_key") != run["resume_key"]:
        if any(checkpoint_dir.iterdir()):
            log.info("%s: checkpoints from other settings or data; starting over", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
        return None
    checkpoints = sorted((p for p in checkpoint_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]))
    while checkpoints and not _complete(checkpoints[-1]):
        broken = checkpoints.pop()
        log.warning("%s is incomplete (the job was killed while saving it); removing it", broken)
        shutil.rmtree(broken)
    return checkpoints[-1] if checkpoints else None


# --------------------------------------------------------------------------- the LM head's work


def score_labelled_only(device: str, enable: bool = True) -> bool:
    """Have TRL's fused LM head score only the positions that carry a label on a CPU too.

    SFTTrainer's loss runs TRL's chunked log-probability head. On CUDA and XPU (its Triton
    kernel) it projects only the positions whose next token is trained; elsewhere it projects
    every position, prompt and padding included, so that a compiled graph (Neuron, XLA) keeps
    one shape from batch to batch. Eager torch on a CPU compiles nothing, and the positions a
    completion-only loss ignores are most of a row (a multiple-choice prompt of 90 tokens
    trains a label of 2), so there TRL is told to take its compact path. The loss and the
    gradients are the same sums over the same positions (tests/test_train.py).

    TRL decides this in ``trl.trainer.utils._use_triton``, a private name: where a TRL version
    lacks it, training goes on as TRL ships it and a warning says so. Returns whether the
    head now scores only labelled positions on ``device``. ``enable=False`` restores TRL's own
    choice (``bench/train_throughput.py`` compares the two).
    """
    import torch
    from trl.trainer import utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if not callable(current):
        log.warning("this TRL (%s) has no trl.trainer.utils._use_triton; its LM head scores every position on "
                    "%s, which is slower but gives the same loss", provenance.library_versions(["trl"])["trl"], device)
        return device.startswith("cuda")
    trl_decides = getattr(current, "ftmatrix_wraps", current)
    if not enable:
        trl_utils._use_triton = trl_decides
    elif current is trl_decides:
        def compact_on_cpu(dev, _trl_decides=trl_decides):
            return dev.type == "cpu" or _trl_decides(dev)

        compact_on_cpu.ftmatrix_wraps = trl_decides
        trl_utils._use_triton = compact_on_cpu
    return bool(trl_utils._use_triton(torch.device(device)))


# --------------------------------------------------------------------------- padding-free check


def padding_free_loss_gap(trainer, precision: str, examples: int = 4) -> float:
    """Relative difference between the loss of a padded batch and the same rows without padding."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dataset = trainer.train_dataset
    head = min(len(dataset), 32)
    by_length = sorted(range(head), key=lambda i: len(dataset[i]["input_ids"]))
    step = max(1, len(by_length) // examples)
    rows = [{k: dataset[i][k] for k in ("input_ids", "labels")} for i in by_length[::step][:examples]]
    pad_id = trainer.processing_class.pad_token_id
    padded = DataCollatorForLanguageModeling(pad_token_id=pad_id)(rows)
    flat = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(rows)
    model = trainer.model
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad(), trainer.accelerator.autocast():
        for batch in (padded, flat):
            batch = {k: v.to(trainer.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            losses.append(model(**batch, fused_lm_head=True, use_cache=False).loss.float().item())
    model.train(was_training)
    gap = abs(losses[0] - losses[1]) / max(abs(losses[0]), 1e-12)
    log.info("padded vs padding-free loss on %d rows: %.6f vs %.6f (relative gap %.2e, %s)",
             len(rows), losses[0], losses[1], gap, precision)
    return gap


def use_padding_free(trainer) -> None:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer.data_collator = DataCollatorForLanguageModeling(
        pad_token_id=trainer.processing_class.pad_token_id, padding_free=True)


def batching_cost(trainer, device: str, seed: int = 0) -> dict:
    """Estimated multiply-adds of one epoch, padded batches against padding-free ones.

    Padding-free batches drop the padding positions, but with sdpa or eager attention the
    flattened batch attends over its whole length (a block-diagonal mask over sum(l)²
    pairs) where padded batches cost batch × longest². Which is cheaper depends on the data
    and the model, so it is estimated from the rows' lengths and the model's shapes:
    per position, the linear layers (and, where TRL's LM head scores every position rather
    than only the labelled ones, the projection onto the vocabulary); per query-key pair,
    the attention products.
    """
    import numpy as np
    import torch
    from trl.trainer import utils as trl_utils

    config = trainer.model.config
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    per_position = layers * (2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * inner)
    labelled_only = getattr(trl_utils, "_use_triton", lambda dev: dev.type == "cuda")(torch.device(device))
    if not labelled_only:
        per_position += config.vocab_size * hidden
    per_pair = layers * heads * head_dim * 2
    varlen = "flash" in str(config._attn_implementation)

    lengths = np.array([len(ids) for ids in trainer.train_dataset["input_ids"]])
    batch = trainer.args.per_device_train_batch_size
    if trainer.args.train_sampling_strategy == "group_by_length":
        order = np.argsort(lengths)
    else:
        order = np.random.default_rng(seed).permutation(len(lengths))
    padded = flat = 0.0
    positions = 0
    for start in range(0, len(order), batch):
        rows = lengths[order[start:start + batch]].astype(float)
        positions += len(rows) * rows.max()
        padded += len(rows) * rows.max() * (per_position + rows.max() * per_pair)
        pairs = (rows ** 2).sum() if varlen else rows.sum() ** 2
        flat += rows.sum() * per_position + pairs * per_pair
    return {"padded": padded, "padding_free": flat, "real_tokens": int(lengths.sum()),
            "padded_positions": int(positions)}


def choose_batching(trainer, train: dict, precision: str, device: str) -> tuple[bool, dict]:
    """Padding-free batches where asked, cheaper by the estimate, and giving the padded loss here."""
    if not train["padding_free"]:
        return False, {"reason": "train.padding_free is false"}
    cost = batching_cost(trainer, device, seed=train["data_seed"] or 0)
    info = {"estimated_cost_ratio": round(cost["padding_free"] / cost["padded"], 3),
            "padded_positions_per_real_token": round(cost["padded_positions"] / cost["real_tokens"], 3)}
    if cost["padding_free"] >= cost["padded"]:
        info["reason"] = "padded batches are estimated cheaper for these rows and this model"
        return False, info
    gap = padding_free_loss_gap(trainer, precision)
    info["loss_gap"] = gap
    if gap > PADDING_FREE_RTOL[precision]:
        log.warning("padding-free batches change the loss here (relative gap %.2e with %s attention); "
                    "keeping padded batches", gap, trainer.model.config._attn_implementation)
        info["reason"] = "padding-free batches change the loss with this model"
        return False, info
    info["reason"] = "same loss as padded batches, estimated cheaper"
    use_padding_free(trainer)
    return True, info


# --------------------------------------------------------------------------- measures


def peak_memory(device: str) -> tuple[float, str]:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_memory_allocated"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (kb / 1024 if sys.platform != "darwin" else kb / 2**20), "cpu_peak_rss"


def parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def heldout_loss(trainer, dataset) -> float:
    loss = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="heldout")["heldout_loss"]
    return float(loss)


# --------------------------------------------------------------------------- the trainer


def load_model(model_dir: str | Path, trust_remote_code: bool = False, where: str | None = None):
    import torch

    from ftmatrix.models import load_causal_lm

    try:
        return load_causal_lm(model_dir, where=where or str(model_dir), use_safetensors=True, dtype=torch.float32,
                              trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where or model_dir}: cannot load the model in {model_dir} ({exc}); "
                         f"download or build it again.") from None


def linear_module_names(model) -> list[str]:
    """The short names of the model's linear layers below its LM head (what LoRA can adapt)."""
    import torch

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def check_target_modules(model, target: str, where: str) -> None:
    """Stop before training when ``lora.target_modules`` names no linear layer of the model."""
    from ftmatrix.config import target_modules_match

    names = linear_module_names(model)
    if not target_modules_match(target, names):
        raise ConfigError(f"{where}: lora.target_modules is {target!r}, which matches no linear layer of this "
                          f"model; its linear layers are {', '.join(names)}. Use all-linear, one of these names, or "
                          f"a regular expression over them (e.g. '(q|v)_proj').")


def build_trainer(settings: dict, model_dir: str | Path, tokenizer, examples: list[dict], checkpoint_dir: str | Path,
                  *, precision: str = "fp32", device: str = "cpu", trust_remote_code: bool = False,
                  callbacks: list | None = None, where: str | None = None):
    """TRL's SFTTrainer for one variant (LoRA adapters added by PEFT when the method is lora)."""
    from trl import SFTTrainer

    model = load_model(model_dir, trust_remote_code, where)
    score_labelled_only(device)
    if settings["method"] == "lora":
        check_target_modules(model, settings["lora"]["target_modules"], where or str(model_dir))
    return SFTTrainer(
        model=model,
        args=sft_config(settings, checkpoint_dir, precision, device),
        train_dataset=to_dataset(examples, bool(settings["enable_thinking"])),
        processing_class=tokenizer,
        peft_config=lora_config(settings["rank"], settings["lora"]) if settings["method"] == "lora" else None,
        callbacks=callbacks,
    )


def _tensorboard_callback(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(SummaryWriter(log_dir=str(log_dir)))


# --------------------------------------------------------------------------- the job


def train_variant(settings: dict, model_manifest: str, train_file: str, heldout_file: str, output_dir: str,
                  metrics_file: str, checkpoint_dir: str, config_hash: str | None, threads: int = 1, *,
                  tensorboard_dir: str | None = None, callbacks: list | None = None) -> dict:
    """Fine-tune one variant; resumes from ``checkpoint_dir``; returns the metrics it writes."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    started = time.perf_counter()
    train = settings["train"]
    method, rank = settings["method"], settings["rank"]
    enable_thinking = bool(settings["enable_thinking"])
    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    torch.set_num_threads(max(1, int(threads)))
    transformers.utils.logging.set_verbosity_warning()

    # 1. Inputs.
    manifest = load_manifest(model_manifest)
    model_dir = model_path(model_manifest)
    trust = manifest.trust_remote_code
    examples = read_examples(train_file)
    heldout = read_examples(heldout_file, limit=train["heldout_size"])
    precision, device = choose_precision(train["precision"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust)

    # 2. Template and lengths.
    lengths = render_check(tokenizer, examples, enable_thinking, train["max_length"], str(train_file))
    if lengths["no_completion_left"] == lengths["examples"]:
        raise DataError(f"{train_file}: no example has a completion token left after truncation to "
                        f"train.max_length={train['max_length']} (the longest prompt has {lengths['longest_prompt']} "
                        f"tokens); raise train.max_length or shorten the prompts.")
    if lengths["truncated"]:
        log.warning("%d of %d training examples are longer than max_length=%d tokens and are truncated "
                    "(%d lose their whole completion and are dropped)", lengths["truncated"],
                    lengths["examples"], train["max_length"], lengths["no_completion_left"])

    heldout_lengths = render_check(tokenizer, heldout, enable_thinking, train["max_length"], str(heldout_file))
    if heldout_lengths["no_completion_left"] == heldout_lengths["examples"]:
        raise DataError(f"{heldout_file}: no held-out example has a completion token left after truncation to "
                        f"train.max_length={train['max_length']}; raise train.max_length.")

    # 3. Model and trainer.
    run = {"variant": settings["variant"], "settings_hash": settings_hash(settings),
           "resume_key": stable_hash({"settings": settings_hash(settings),
                                      "train": file_sha256(train_file, 16),
                                      "model": file_sha256(model_manifest, 16)})}
    resume_from = resumable_checkpoint(checkpoint_dir, run)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(checkpoint_dir / RUN_FILE, run)
    ledger = checkpoint_dir / ELAPSED_FILE
    already = float(_read_json_or_empty(ledger).get(resume_from.name.split("-")[-1], 0.0)) if resume_from else 0.0

    elapsed_cb = _elapsed_callback(ledger, already)
    all_callbacks = [guard_callback(train["save_steps"]), elapsed_cb, *(callbacks or [])]
    if train["report_to"] == "tensorboard":
        tb_dir = Path(tensorboard_dir) if tensorboard_dir else checkpoint_dir.parent / "tensorboard"
        all_callbacks.append(_tensorboard_callback(tb_dir))
    trainer = build_trainer(settings, model_dir, tokenizer, examples, checkpoint_dir, precision=precision,
                            device=device, trust_remote_code=trust, callbacks=all_callbacks,
                            where=str(model_manifest))
    kept = len(trainer.train_dataset)
    if kept == 0:  # TRL drops examples with no completion token left after truncation
        raise DataError(f"{train_file}: no trainable tokens after truncation to train.max_length="
                        f"{train['max_length']}; raise it.")

    # 4. Padding-free batches where they give the same loss as padded ones and save work.
    padding_free, batching = choose_batching(trainer, train, precision, device)
    batching["lm_head_scores"] = "trained positions" if score_labelled_only(device) else "every position"
    log.info("%s batches: %s", "padding-free" if padding_free else "padded", batching["reason"])

    # 5. Held-out loss, training, held-out loss.
    heldout_ds = to_dataset(heldout, enable_thinking)
    before = heldout_loss(trainer, heldout_ds)
    if not math.isfinite(before):
        raise TrainingDiverged(f"{model_manifest}: the untuned model's held-out loss is {before}; its weights "
                               f"may be corrupt. Download or build the model again.")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if resume_from:
        log.info("resuming from %s", resume_from)
    run_started = time.perf_counter()
    # A run that diverges is a result of its learning-rate sweep, not a failure of the study:
    # it is recorded (no weights kept, held-out loss infinite) and never selected; the
    # selection stops with a clear message only when every rate of a variant diverged.
    diverged = None
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except TrainingDiverged as exc:
        diverged = str(exc)
    except torch.OutOfMemoryError:
        raise FtmatrixError(f"out of memory while training {settings['variant']}: lower "
                            f"train.per_device_batch_size (raise gradient_accumulation_steps to keep the batch) "
                            f"or set train.gradient_checkpointing: true.") from None
    train_seconds = elapsed_cb.elapsed()
    this_run_seconds = time.perf_counter() - run_started
    after = heldout_loss(trainer, heldout_ds) if diverged is None else math.inf
    if diverged is None and not math.isfinite(after):
        diverged = f"training ended with a held-out loss of {after}"
    if diverged:
        after = math.inf
        log.warning("%s diverged at learning rate %g: %s", settings["variant"], learning_rate(settings), diverged)
    memory_mb, memory_kind = peak_memory(device)

    # 6. Outputs: model first (atomically), then the metrics, then drop the checkpoints.
    state = trainer.state
    variant = variant_from_path(settings["variant"])
    trainable, total = parameter_counts(trainer.model)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))
    try:
        if diverged:
            (staging / "DIVERGED.txt").write_text(f"No weights: this run diverged ({diverged}).\n")
        else:
            trainer.model.config.use_cache = True
            trainer.model.save_pretrained(staging, safe_serialization=True)
            if method == "lora":
                stable_adapter_config(staging / "adapter_config.json")
            tokenizer.save_pretrained(staging)
        replace_dir(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    loss_curve = [[entry["step"], entry["loss"]] for entry in state.log_history if "loss" in entry]
    tokens = int(state.num_input_tokens_seen)
    metrics = TrainMetrics(
        variant={"model": variant.model, "method": variant.method, "rank": variant.rank,
                 "train_task": variant.train_task, "seed": variant.seed},
        wall_time_s=round(train_seconds, 3),
        wall_time_this_run_s=round(this_run_seconds, 3),
        job_time_s=round(time.perf_counter() - started, 3),
        resumed_from_step=int(resume_from.name.split("-")[-1]) if resume_from else None,
        train_tokens=tokens,
        tokens_per_s=round(tokens / train_seconds, 3) if train_seconds > 0 else None,
        steps=int(state.global_step),
        epochs=round(float(state.epoch or 0.0), 4),
        loss_curve=loss_curve,
        final_loss=loss_curve[-1][1] if loss_curve else math.nan,
        heldout_loss_before=before,
        heldout_loss_after=after,
        heldout_examples=len(heldout),
        heldout_examples_used=heldout_lengths["examples"] - heldout_lengths["no_completion_left"],
        peak_memory_mb=round(memory_mb, 1),
        peak_memory_kind=memory_kind,
        trainable_params=trainable,
        total_params=total,
        device=device,
        precision=precision,
        threads=torch.get_num_threads(),
        attn_implementation=trainer.model.config._attn_implementation,
        padding_free=padding_free,
        batching=batching,
        learning_rate=learning_rate(settings),
        lora=({"r": rank, "lora_alpha": lora_alpha(rank, settings["lora"]),
               "use_rslora": settings["lora"]["use_rslora"], "dropout": settings["lora"]["dropout"],
               "target_modules": settings["lora"]["target_modules"]} if method == "lora" else None),
        enable_thinking=enable_thinking,
        train_examples=lengths["examples"],
        train_examples_used=kept,
        truncated_examples=lengths["truncated"],
        dropped_examples=lengths["examples"] - kept,
        max_length=train["max_length"],
        settings_hash=run["settings_hash"],
        diverged=diverged,
        provenance=provenance.record(
            config_hash=config_hash, model=manifest.name, model_revision=manifest.resolved_revision,
            train_data=file_sha256(train_file, 16), heldout_data=file_sha256(heldout_file, 16),
            device=provenance.device_info()),
    )
    metrics.write(metrics_file)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("%s: %d steps, %d tokens in %.1f s (%.0f tokens/s); held-out loss %.4f -> %.4f",
             settings["variant"], metrics.steps, tokens, train_seconds, metrics.tokens_per_s or 0.0,
             before, after)
    return metrics


__all__ = ["train_variant", "TrainingDiverged", "render_check", "lora_config", "lora_alpha", "sft_config",
           "choose_precision", "read_examples", "padding_free_loss_gap"]

