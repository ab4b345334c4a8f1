"""The fine-tuning stage on real SQuAD v2 rows and a small Qwen3 built by the project, on CPU."""

from __future__ import annotations

import json
import random
from pathlib import Path

import re

import pytest

from ftmatrix.errors import ConfigError, DataError, ModelError
from tests.test_train_support import (build_small_model, corpus_of, job_paths, settings_for, short_examples,
                                      squad_examples, write_task)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def examples(shared_data):
    return squad_examples(shared_data)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, examples) -> Path:
    """Manifest of a random-weight Qwen3 (hidden 32) whose 600-token vocabulary is trained on SQuAD text."""
    torch.set_num_threads(1)
    return build_small_model(tmp_path_factory.mktemp("small") / "model", corpus_of(examples[:600]))


@pytest.fixture(scope="module")
def task_files(tmp_path_factory, examples):
    rows = short_examples(examples, 40)
    return write_task(tmp_path_factory.mktemp("task"), rows[:32], rows[32:40])


def run(tmp_path, small_model, task_files, settings, **kwargs):
    from ftmatrix.train import train_variant

    from ftmatrix.records import TrainMetrics

    train_file, eval_file = task_files
    paths = job_paths(tmp_path, settings)
    metrics = train_variant(settings, str(small_model), str(train_file), str(eval_file),
                            config_hash="test", threads=1, **paths, **kwargs)
    assert TrainMetrics.read(paths["metrics_file"]) == metrics     # what readers get is what was written
    return metrics.to_json()


def trainer_for(small_model, rows, settings, tmp_path):
    from transformers import AutoTokenizer

    from ftmatrix.models import model_path
    from ftmatrix.train import build_trainer

    folder = model_path(small_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return build_trainer(settings, folder, tokenizer, rows, tmp_path / "checkpoints")


# ----------------------------------------------------------------------------- chat template


@pytest.mark.parametrize("enable_thinking", [False, True])
def test_evaluation_prompt_is_a_prefix_of_the_training_text_with_real_qwen3(qwen_tokenizer_dir, examples,
                                                                           enable_thinking):
    from transformers import AutoTokenizer

    from ftmatrix.train import render_check

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    rows = examples[:50]
    lengths = render_check(tokenizer, rows, enable_thinking, 1024, "squad")
    assert lengths["examples"] == 50 and lengths["truncated"] == 0
    for row in rows[:5]:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True,
                                               enable_thinking=enable_thinking)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False,
                                             enable_thinking=enable_thinking)
        assert full.startswith(prompt)
        # Without thinking, evaluation's prompt already holds the empty think block, so the
        # model trains on answering straight away, exactly as it will be asked to.
        assert prompt.endswith("<think>\n\n</think>\n\n") is (not enable_thinking)
        assert full[len(prompt):] .endswith(row["completion"][0]["content"] + "<|im_end|>\n")


def test_a_template_that_renders_the_prompt_differently_is_refused(qwen_tokenizer_dir, examples):
    from transformers import AutoTokenizer

    from ftmatrix.train import render_check

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    tokenizer.chat_template = tokenizer.chat_template.replace("'<|im_start|>assistant\\n'", "'<|im_start|>bot\\n'")
    with pytest.raises(ModelError, match="renders example 1's prompt"):
        render_check(tokenizer, examples[:3], False, 1024, "squad")


# ----------------------------------------------------------------------------- batches and loss


def test_a_real_collated_batch_masks_every_prompt_token(small_model, examples, tmp_path):
    from ftmatrix.train import use_padding_free

    rows = short_examples(examples, 8)
    trainer = trainer_for(small_model, rows, settings_for(), tmp_path)
    tokenizer = trainer.processing_class
    batch = next(iter(trainer.get_train_dataloader()))
    input_ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    completions = {r["completion"][0]["content"] + "<|im_end|>\n" for r in rows}
    for ids, lab, att in zip(input_ids, labels, mask):
        trained = lab != -100
        assert trained.any()
        # Labels equal the inputs where trained; prompt and padding are -100.
        assert torch.equal(lab[trained], ids[trained])
        assert not trained[att == 0].any()
        first = int(trained.nonzero()[0])
        assert trained[first:int(att.sum())].all() and not trained[:first].any()
        prompt_text = tokenizer.decode(ids[:first])
        assert prompt_text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert tokenizer.decode(ids[trained]) in completions

    # The padding-free collator keeps the same labels, flattened into one row.
    use_padding_free(trainer)
    flat = next(iter(trainer.get_train_dataloader()))
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert int((flat["labels"] != -100).sum()) == int((labels != -100).sum())
    assert flat["input_ids"].shape[1] == int(mask.sum())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padding_free_batches_give_the_same_loss_and_gradients_as_padded_ones(small_model, examples, tmp_path,
                                                                              attention):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ftmatrix.train import padding_free_loss_gap

    rows = short_examples(examples, 8, max_chars=900)
    trainer = trainer_for(small_model, rows, settings_for(train={"max_length": 1024}), tmp_path)
    trainer.model.config._attn_implementation = attention
    prepared = [{k: trainer.train_dataset[i][k] for k in ("input_ids", "labels")} for i in range(8)]
    lengths = {len(r["input_ids"]) for r in prepared}
    assert len(lengths) > 4  # rows of different lengths, so the padded batch really pads
    pad = trainer.processing_class.pad_token_id
    grads = []
    for collator in (DataCollatorForLanguageModeling(pad), DataCollatorForLanguageModeling(pad, padding_free=True)):
        trainer.model.zero_grad()
        loss = trainer.model(**collator(prepared), fused_lm_head=True).loss
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in trainer.model.parameters()]))
    (padded_loss, padded_grads), (flat_loss, flat_grads) = grads
    assert flat_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(padded_grads, flat_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert padding_free_loss_gap(trainer, "fp32") < 1e-5


@pytest.mark.parametrize("method,rank", [("full", 0), ("lora", 8)])
def test_on_a_cpu_the_lm_head_scores_only_the_trained_positions_to_the_same_loss_and_gradients(
        small_model, examples, tmp_path, monkeypatch, method, rank):
    """A completion-only loss trains a short answer after a long prompt: projecting the prompt's
    positions onto the vocabulary is work thrown away (most of a CPU step on the demo)."""
    from trl.trainer import utils as trl_utils
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ftmatrix.train import score_labelled_only

    scored = []
    kernel = trl_utils._ChunkedLogProbFunction

    class CountingKernel:
        @staticmethod
        def apply(hidden, *args):
            scored.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", CountingKernel)
    score_labelled_only("cpu", enable=False)        # TRL as shipped, until a trainer is built
    rows = short_examples(examples, 8, max_chars=900)
    trainer = trainer_for(small_model, rows, settings_for(method, rank, train={"max_length": 1024}), tmp_path)
    prepared = [{k: trainer.train_dataset[i][k] for k in ("input_ids", "labels")} for i in range(8)]
    batch = DataCollatorForLanguageModeling(trainer.processing_class.pad_token_id)(prepared)
    trained = int((batch["labels"][:, 1:] != -100).sum())
    positions = batch["labels"][:, 1:].numel()
    assert trained < positions / 4      # short answers after long passages, and padding
    trainer.model.eval()      # no LoRA dropout: both passes see the same network
    results = []
    try:
        for labelled_only in (True, False):     # as build_trainer left it, then TRL's own choice
            if not labelled_only:
                assert score_labelled_only("cpu", enable=False) is False
            trainer.model.zero_grad()
            loss = trainer.model(**batch, fused_lm_head=True).loss
            loss.backward()
            results.append((loss.item(), [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]))
    finally:
        score_labelled_only("cpu")
    assert scored == [trained, positions]
    (compact_loss, compact_grads), (every_loss, every_grads) = results
    assert compact_loss == pytest.approx(every_loss, rel=1e-6)
    for a, b in zip(compact_grads, every_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_padded_and_padding_free_training_end_at_the_same_weights(small_model, examples, tmp_path):
    from ftmatrix.train import use_padding_free

    rows = short_examples(examples, 16, max_chars=900)
    settings = settings_for(train={"max_length": 1024, "max_steps": 4})
    weights = []
    for padding_free in (False, True):
        trainer = trainer_for(small_model, rows, settings, tmp_path / str(padding_free))
        if padding_free:
            use_padding_free(trainer)
        trainer.train()
        weights.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- truncation


def test_truncated_examples_are_counted_and_untrainable_ones_dropped(small_model, task_files, tmp_path):
    from transformers import AutoTokenizer

    from ftmatrix.io import read_jsonl
    from ftmatrix.models import model_path

    train_file, _ = task_files
    rows = read_jsonl(train_file)
    tokenizer = AutoTokenizer.from_pretrained(model_path(small_model))
    render = dict(tokenize=True, return_dict=True, enable_thinking=False)
    full = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], **render)["input_ids"]) for r in rows]
    prompt = [len(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, **render)["input_ids"])
              for r in rows]
    max_length = sorted(full)[len(full) // 2]  # about half the rows are longer
    settings = settings_for(train={"max_length": max_length, "max_steps": 1})
    metrics = run(tmp_path, small_model, task_files, settings)
    assert metrics["truncated_examples"] == sum(n > max_length for n in full) > 0
    assert metrics["dropped_examples"] == sum(n >= max_length for n in prompt)
    assert metrics["train_examples_used"] == len(rows) - metrics["dropped_examples"]


def test_no_trainable_token_after_truncation_stops_with_a_clear_message(small_model, task_files, tmp_path):
    settings = settings_for(train={"max_length": 16})
    with pytest.raises(DataError, match=r"no example has a completion token left .*max_length=16"):
        run(tmp_path, small_model, task_files, settings)
    assert not Path(job_paths(tmp_path, settings)["metrics_file"]).exists()


# ----------------------------------------------------------------------------- LoRA


def test_lora_trains_only_adapters_whose_count_matches_rank_and_layer_shapes(small_model, examples, tmp_path):
    from ftmatrix.models import model_path
    from ftmatrix.train import load_model

    rank = 4
    base = load_model(model_path(small_model))
    # all-linear: every nn.Linear of the model except the output head.
    linears = {n: m for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    expected = sum(rank * (m.in_features + m.out_features) for m in linears.values())

    trainer = trainer_for(small_model, short_examples(examples, 16), settings_for("lora", rank), tmp_path)
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert sum(p.numel() for p in trainable.values()) == expected
    adapted = {n.split(".lora_")[0].removeprefix("base_model.model.") for n in trainable}
    assert adapted == set(linears)

    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed == set(trainable)


def test_lora_alpha_rule_and_rslora(tmp_path):
    from ftmatrix.config import validate
    from ftmatrix.train import lora_alpha, lora_config

    assert lora_alpha(16, {"alpha": {"rule": "proportional", "value": 2.0}}) == 32
    assert lora_alpha(16, {"alpha": {"rule": "fixed", "value": 8.0}}) == 8
    # each rule's default value comes from the schema
    for alpha, expected in (({}, 32), ({"rule": "proportional"}, 32), ({"rule": "fixed"}, 32)):
        lora = validate({"models": [{"name": "m", "source": "build", "build": {}}],
                         "tasks": [{"name": "t", "kind": "arc", "source": {"type": "demo"}}],
                         "lora": {"alpha": alpha}})["lora"]
        assert lora_alpha(16, lora) == expected, alpha
    config = lora_config(64, {"alpha": {"rule": "proportional", "value": 2.0}, "dropout": 0.1, "use_rslora": True,
                              "target_modules": "all-linear"})
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora) == (64, 128, 0.1, True)
    assert config.target_modules == "all-linear"


# ----------------------------------------------------------------------------- precision, failures


def test_precision_is_fp32_on_cpu_and_bf16_only_on_a_cpu_that_computes_in_bf16(monkeypatch):
    from ftmatrix import train
    from ftmatrix.train import choose_precision

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert choose_precision("auto") == ("fp32", "cpu")
    assert choose_precision("fp32") == ("fp32", "cpu")
    with pytest.raises(ConfigError, match="fp16"):
        choose_precision("fp16")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="AVX512-BF16 or AMX"):
        choose_precision("bf16")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert choose_precision("bf16") == ("bf16", "cpu")
    assert choose_precision("auto") == ("fp32", "cpu")   # never chosen for the user on a CPU


def test_padding_free_is_chosen_where_it_saves_work(small_model, tiny_qwen3, examples, tmp_path):
    """Long rows of mixed lengths and a model whose work per position outweighs its attention:
    padding-free batches. Short rows of nearly one length and a small model: padded batches
    (less attention work). The LM head counts only where it scores every position (TRL's head
    as shipped, off a GPU): then Qwen3's 151,669-token vocabulary makes padding costly."""
    from transformers import AutoTokenizer

    from ftmatrix.train import batching_cost, build_trainer, choose_batching, score_labelled_only

    settings = settings_for(train={"per_device_batch_size": 8, "max_length": 1024})
    rows = random.Random(0).sample(examples, 32)
    wide = build_small_model(tmp_path / "wide" / "model", corpus_of(examples[:600]), hidden_size=256)
    trainer = trainer_for(wide, rows, settings, tmp_path / "a")
    chosen, info = choose_batching(trainer, settings["train"], "fp32", "cpu")
    assert chosen and info["estimated_cost_ratio"] < 0.9 and info["loss_gap"] < 1e-5
    assert info["padded_positions_per_real_token"] > 1.2
    assert trainer.data_collator.padding_free

    trainer = build_trainer(settings, tiny_qwen3, AutoTokenizer.from_pretrained(tiny_qwen3), rows, tmp_path / "v")
    labelled = batching_cost(trainer, "cpu")
    try:
        score_labelled_only("cpu", enable=False)
        every = batching_cost(trainer, "cpu")
        chosen, info = choose_batching(trainer, settings["train"], "fp32", "cpu")
    finally:
        score_labelled_only("cpu")
    assert every["padded"] > labelled["padded"] * 10     # the vocabulary projected at every position
    assert labelled["padding_free"] > labelled["padded"] and chosen and info["estimated_cost_ratio"] < 0.9

    same_length = [r for r in examples if len(r["prompt"][0]["content"]) < 400]
    same_length.sort(key=lambda r: len(r["prompt"][0]["content"]))
    trainer = trainer_for(small_model, same_length[:32], settings, tmp_path / "b")
    chosen, info = choose_batching(trainer, settings["train"], "fp32", "cpu")
    assert not chosen and "estimated cheaper" in info["reason"]
    assert not trainer.data_collator.padding_free

    off = settings_for(train={"padding_free": False})
    assert choose_batching(trainer, off["train"], "fp32", "cpu")[0] is False


# ----------------------------------------------------------------------------- the whole job


@pytest.mark.parametrize("method,rank", [("full", 0), ("lora", 8)])
def test_a_training_job_writes_a_loadable_model_and_its_metrics(small_model, task_files, tmp_path, method, rank):
    from peft import PeftModel

    from ftmatrix.io import read_json
    from ftmatrix.models import model_path
    from ftmatrix.train import load_model

    settings = settings_for(method, rank, train={"max_steps": 8, "save_steps": 3})
    metrics = run(tmp_path, small_model, task_files, settings)
    paths = {k: Path(v) for k, v in job_paths(tmp_path, settings).items()}
    assert read_json(paths["metrics_file"]) == json.loads(json.dumps(metrics))
    assert not paths["checkpoint_dir"].exists()
    assert [p.name for p in paths["output_dir"].parent.iterdir() if p.name.startswith(".")] == []
    files = {p.name for p in paths["output_dir"].iterdir()}
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)  # safetensors only
    assert {"tokenizer.json", "tokenizer_config.json"} <= files

    if method == "full":
        assert "model.safetensors" in files and "config.json" in files
        model = load_model(paths["output_dir"])
        assert metrics["trainable_params"] == metrics["total_params"] == model.num_parameters()
    else:
        assert {"adapter_model.safetensors", "adapter_config.json"} <= files
        adapter_config = json.loads((paths["output_dir"] / "adapter_config.json").read_text())
        assert adapter_config["r"] == rank and adapter_config["lora_alpha"] == 32   # the schema's default
        # PEFT saves its set of adapted modules in hash order; sorted, two runs write the same bytes
        assert len(adapter_config["target_modules"]) % 7 == 0                         # 7 linear layers a block
        assert adapter_config["target_modules"] == sorted(adapter_config["target_modules"])
        model = PeftModel.from_pretrained(load_model(model_path(small_model)), paths["output_dir"])
        assert metrics["lora"] == {"r": rank, "lora_alpha": 32, "use_rslora": False, "dropout": 0.05,
                                   "target_modules": "all-linear"}
        assert 0 < metrics["trainable_params"] < metrics["total_params"]

    assert metrics["variant"] == {"model": "small", "method": method, "rank": rank, "train_task": "squad_v2",
                                  "seed": 0}
    assert metrics["steps"] == 8 and metrics["epochs"] == pytest.approx(1.0)
    assert [s for s, _ in metrics["loss_curve"]] == list(range(1, 9))
    assert metrics["final_loss"] == metrics["loss_curve"][-1][1]
    # wall_time_s is rounded to the millisecond, which matters on a run of under a second
    assert metrics["tokens_per_s"] == pytest.approx(metrics["train_tokens"] / metrics["wall_time_s"],
                                                    rel=1e-3 + 0.0005 / metrics["wall_time_s"])
    assert metrics["heldout_loss_after"] < metrics["heldout_loss_before"]
    assert metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert metrics["batching"]["lm_head_scores"] == "trained positions"
    assert metrics["peak_memory_kind"] == "cpu_peak_rss" and metrics["peak_memory_mb"] > 50
    assert metrics["learning_rate"] == (1e-3 if method == "full" else 1e-2)
    assert metrics["settings_hash"] and metrics["provenance"]["config_hash"] == "test"
    assert metrics["provenance"]["libraries"]["trl"] and metrics["provenance"]["train_data"]
    assert "git_commit" in metrics["provenance"]
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_the_real_tokens_counted_are_the_rows_rendered_lengths(small_model, task_files, tmp_path):
    from transformers import AutoTokenizer

    from ftmatrix.io import read_jsonl
    from ftmatrix.models import model_path

    train_file, _ = task_files
    rows = read_jsonl(train_file)
    tokenizer = AutoTokenizer.from_pretrained(model_path(small_model))
    lengths = [min(256, len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True,
                                                           return_dict=True, enable_thinking=False)["input_ids"]))
               for r in rows]
    for padding_free in (False, True):
        settings = settings_for(train={"max_steps": -1, "epochs": 1, "padding_free": padding_free})
        metrics = run(tmp_path / str(padding_free), small_model, task_files, settings)
        assert metrics["dropped_examples"] == 0
        assert metrics["train_tokens"] == sum(lengths)


def test_a_diverged_run_is_recorded_without_weights_and_never_selected(small_model, task_files, tmp_path):
    """In a learning-rate sweep a rate that diverges is a result, not a failure of the study: the run
    says why, keeps no weights (and no checkpoint), and the selection refuses it."""
    import math

    from ftmatrix.errors import DataError
    from ftmatrix.selection import select

    settings = settings_for(train={"learning_rate": {"full": 1e12}, "max_steps": 20, "save_steps": 2,
                                   "logging_steps": 5})
    metrics = run(tmp_path, small_model, task_files, settings)
    assert re.match(r"training diverged at step \d+: the (loss|grad norm) is (nan|inf)", metrics["diverged"])
    assert metrics["heldout_loss_after"] == math.inf
    paths = {k: Path(v) for k, v in job_paths(tmp_path, settings).items()}
    assert (paths["output_dir"] / "DIVERGED.txt").is_file()
    assert not list(paths["output_dir"].glob("*.safetensors"))
    assert not paths["checkpoint_dir"].exists()
    with pytest.raises(DataError, match="every rate diverged"):
        select([paths["metrics_file"]])


def test_corrupt_weights_stop_before_training(small_model, task_files, tmp_path):
    import dataclasses
    import shutil

    from safetensors.torch import load_file, save_file

    from ftmatrix.models import load_manifest, model_path
    from ftmatrix.train import TrainingDiverged

    broken = tmp_path / "broken"
    shutil.copytree(model_path(small_model), broken)
    weights = load_file(broken / "model.safetensors")
    name = next(n for n in weights if n.endswith("input_layernorm.weight"))
    weights[name][0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    manifest = dataclasses.replace(load_manifest(small_model), path=str(broken), path_from_manifest="broken")
    manifest.write(tmp_path / "manifest.json")
    with pytest.raises(TrainingDiverged, match="untuned model's held-out loss is nan"):
        run(tmp_path, tmp_path / "manifest.json", task_files, settings_for())


def test_tensorboard_event_files_are_written_when_asked(small_model, task_files, tmp_path):
    settings = settings_for(train={"report_to": "tensorboard", "max_steps": 3})
    run(tmp_path, small_model, task_files, settings, tensorboard_dir=str(tmp_path / "tb"))
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]
    assert len(accumulator.Scalars("train/loss")) == 3


def test_report_to_none_writes_no_event_files(small_model, task_files, tmp_path):
    settings = settings_for(train={"max_steps": 2})
    run(tmp_path, small_model, task_files, settings)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_bad_rows_are_named_by_file_and_line(small_model, task_files, tmp_path):
    from ftmatrix.io import read_jsonl, write_jsonl

    train_file, eval_file = task_files
    rows = read_jsonl(train_file)
    rows[2]["completion"] = "just text"
    bad = tmp_path / "train.jsonl"
    write_jsonl(bad, rows)
    from ftmatrix.train import train_variant

    settings = settings_for()
    with pytest.raises(DataError, match=r"train.jsonl, line 3: 'completion' must be a non-empty list"):
        train_variant(settings, str(small_model), str(bad), str(eval_file), config_hash="t",
                      **job_paths(tmp_path, settings))


def test_precision_auto_picks_bf16_on_a_gpu_that_supports_it(monkeypatch):
    """The choice logic only (no GPU here): bf16 where supported, fp32 on a GPU without bf16."""
    from ftmatrix.train import choose_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto") == ("bf16", "cuda")
    assert choose_precision("fp16") == ("fp16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto") == ("fp32", "cuda")


def test_gradient_checkpointing_trains_to_the_same_weights(small_model, task_files, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for checkpointing in (False, True):
        settings = settings_for(train={"gradient_checkpointing": checkpointing, "max_steps": 3})
        root = tmp_path / str(checkpointing)
        run(root, small_model, task_files, settings)
        weights.append(load_file(Path(job_paths(root, settings)["output_dir"]) / "model.safetensors"))
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=1e-5, atol=1e-6)


def test_the_data_seed_sets_the_order_of_rows_and_the_seed_the_rest(small_model, task_files, tmp_path):
    from ftmatrix.train import sft_config

    assert sft_config(settings_for(seed=3), tmp_path, "fp32", "cpu").data_seed == 3
    fixed = settings_for(seed=3, train={"data_seed": 7})
    args = sft_config(fixed, tmp_path, "fp32", "cpu")
    assert (args.seed, args.data_seed) == (3, 7)
    # Two seeds give two different trainings; the same seed gives the same one.
    finals = [run(tmp_path / f"s{seed}-{i}", small_model, task_files,
                  settings_for(seed=seed, train={"max_steps": 3}))["final_loss"]
              for i, seed in enumerate((0, 0, 1))]
    assert finals[0] == finals[1] != finals[2]
