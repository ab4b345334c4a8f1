"""The fine-tuning stage on real SQuAD v2 rows and a small Qwen3 built by the project, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

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

    train_file, eval_file = task_files
    return train_variant(settings, str(small_model), str(train_file), str(eval_file),
                         config_hash="test", threads=1, **job_paths(tmp_path, settings), **kwargs)


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


def test_padded_and_padding_free_training_end_at_the_same_weights(small_model, task_files, tmp_path):
    from safetensors.torch import load_file

    weights = {}
    for padding_free in (False, True):
        settings = settings_for(train={"padding_free": padding_free, "max_steps": 4})
        metrics = run(tmp_path / str(padding_free), small_model, task_files, settings)
        assert metrics["padding_free"] is padding_free
        weights[padding_free] = load_file(Path(job_paths(tmp_path / str(padding_free), settings)["output_dir"])
                                          / "model.safetensors")
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, rtol=1e-4, atol=1e-5)


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
    from ftmatrix.train import lora_alpha, lora_config

    assert lora_alpha(16, {"alpha": {"rule": "proportional", "value": 2.0}}) == 32
    assert lora_alpha(16, {"alpha": {"rule": "fixed", "value": 8.0}}) == 8
    config = lora_config(64, {"alpha": {"rule": "proportional", "value": 2.0}, "dropout": 0.1, "use_rslora": True,
                              "target_modules": "all-linear"})
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora) == (64, 128, 0.1, True)
    assert config.target_modules == "all-linear"


# ----------------------------------------------------------------------------- precision, failures


def test_precision_is_fp32_on_cpu_and_bf16_on_cpu_is_refused():
    from ftmatrix.train import choose_precision

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert choose_precision("auto") == ("fp32", "cpu")
    assert choose_precision("fp32") == ("fp32", "cpu")
    with pytest.raises(ConfigError, match="bf16"):
        choose_precision("bf16")
    with pytest.raises(ConfigError, match="fp16"):
        choose_precision("fp16")
