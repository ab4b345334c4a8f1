"""Models: the chat template, the project's tokenizer, building (deterministic), linking and
downloading (safetensors only, refusals with clear messages, the token kept secret)."""

import json
import logging
import shutil
from pathlib import Path

import pytest

from ftmatrix import models
from ftmatrix.chat_template import render_chat
from ftmatrix.errors import DataError, ModelError, SourceUnreachable

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a gem."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA"}],
]

CORPUS = ("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
          "5<|im_end|>\n<|endoftext|>\nA glorb is a fruit. A trask is a tool. The town of Tulvar lies in Osk.\n"
          "<|endoftext|>\n") * 40


def tiny_build(**overrides) -> dict:
    build = {"tokenizer": {"source": "train", "vocab_size": 320}, "corpus": "demo", "hidden_size": 16,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
             "intermediate_size": 32, "max_position_embeddings": 128, "pretrain_steps": 4,
             "pretrain_batch_size": 2, "pretrain_seq_len": 32, "pretrain_lr": 0.003, "seed": 0}
    build.update(overrides)
    return {"name": "tiny", "source": "build", "params_b": 0.001, "finetune": True,
            "trust_remote_code": False, "build": build}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("built") / "tiny"
    manifest = models.build_model(tiny_build(), out, corpus=corpus_file, threads=1)
    return out, manifest


# --- the chat template ------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("thinking", [False, True, None])
def test_chat_template_renders_as_qwen3s_does(messages, thinking, qwen):
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    for generation_prompt in (False, True):
        if generation_prompt and messages[-1]["role"] == "assistant":
            continue
        expected = qwen.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs)
        assert render_chat(messages, add_generation_prompt=generation_prompt, enable_thinking=thinking) == expected


def test_generation_prompt_is_a_prefix_of_the_answered_conversation():
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    answered = prompt + [{"role": "assistant", "content": "5"}]
    for thinking in (False, True):
        head = render_chat(prompt, add_generation_prompt=True, enable_thinking=thinking)
        full = render_chat(answered, enable_thinking=thinking)
        assert full.startswith(head)
        assert full.endswith("5<|im_end|>\n")
    assert render_chat(prompt, add_generation_prompt=True, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_chat(prompt, add_generation_prompt=True, enable_thinking=True).endswith("<|im_start|>assistant\n")


# --- the project's tokenizer --------------------------------------------------------------

def test_trained_tokenizer_has_chatml_tokens_and_the_template_after_save_and_load(built):
    from transformers import AutoTokenizer

    out, manifest = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [token]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # At most the configured size (a tiny corpus may not have enough pairs to merge).
    assert 260 < len(tokenizer) <= 320 and len(tokenizer) == manifest.tokenizer["vocab_size"]
    messages = [{"role": "user", "content": "A glorb is a fruit?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert text == render_chat(messages, add_generation_prompt=True, enable_thinking=False)
    # Byte-level: any text round-trips, even characters the corpus never had.
    assert tokenizer.decode(tokenizer("Ünïcødé ✓ 42", add_special_tokens=False)["input_ids"]) == "Ünïcødé ✓ 42"
    # A span is the same tokens inside a passage and alone at the start of an answer.
    passage = tokenizer("The town of Tulvar lies in Osk.", add_special_tokens=False)["input_ids"]
    for span in ("Tulvar lies in Osk", "Osk", "42"):
        alone = tokenizer(span, add_special_tokens=False)["input_ids"]
        inside = tokenizer(f"x {span}.", add_special_tokens=False)["input_ids"]
        assert any(inside[i: i + len(alone)] == alone for i in range(len(inside))), span
    assert passage[-2:] == tokenizer("Osk.", add_special_tokens=False)["input_ids"]
    # <think> survives decoding (not special), <|im_end|> does not.
    ids = tokenizer("<think>\nx\n</think>\n\ny<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\ny"


# --- building -----------------------------------------------------------------------------

def test_build_writes_a_loadable_qwen3_and_a_complete_manifest(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, manifest = built
    assert (out / "manifest.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin")) and not (out / ".staging").exists()
    on_disk = models.load_manifest(out / "manifest.json")
    assert on_disk == manifest      # what the builder wrote reads back through ModelManifest
    assert json.loads((out / "manifest.json").read_text()) == manifest.to_json()
    assert on_disk.trust_remote_code is False and on_disk.source == "build"
    assert models.model_path(out / "manifest.json") == out
    pre = on_disk.pretraining
    assert pre["steps"] == 4 and len(pre["loss_curve"]) >= 2 and pre["heldout_loss"] > 0
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.num_parameters() == on_disk.params
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == im_end == model.config.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                           enable_thinking=False, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] <= prompt["input_ids"].shape[1] + 3


def test_same_seed_same_weights_other_seed_other_weights(built, corpus_file, tmp_path):
    out, manifest = built
    again = models.build_model(tiny_build(), tmp_path / "again", corpus=corpus_file, threads=1)
    assert again.weights_sha256 == manifest.weights_sha256
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    assert again.pretraining["loss_curve"] == manifest.pretraining["loss_curve"]
    other = models.build_model(tiny_build(seed=1), tmp_path / "other", corpus=corpus_file, threads=1)
    assert other.weights_sha256 != manifest.weights_sha256


def test_pretraining_lowers_the_loss(corpus_file, tmp_path):
    manifest = models.build_model(tiny_build(pretrain_steps=30, pretrain_lr=0.01), tmp_path / "m",
                                  corpus=corpus_file, threads=1)
    curve = manifest.pretraining["loss_curve"]
    assert curve[-1][1] < 0.6 * curve[0][1]


def test_build_with_a_tokenizer_folder_and_no_corpus_gives_random_weights(qwen_tokenizer_dir, tmp_path):
    cfg = tiny_build(corpus="none", tokenizer={"source": "path", "path": str(qwen_tokenizer_dir)})
    manifest = models.build_model(cfg, tmp_path / "m", corpus=None, threads=1)
    assert manifest.pretraining["steps"] == 0
    assert manifest.tokenizer["source"] == "path" and manifest.sizes["vocab_size"] > 150_000
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert "enable_thinking" in tokenizer.chat_template  # Qwen3's own template travels with it


def test_train_tokenizer_without_a_corpus_is_refused(tmp_path):
    with pytest.raises(ModelError, match="tokenizer.*needs a corpus"):
        models.build_model(tiny_build(corpus="none"), tmp_path / "m", corpus=None, threads=1)
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_unreadable_corpus_is_refused(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ModelError, match="not UTF-8"):
        models.build_model(tiny_build(corpus=str(bad)), tmp_path / "m", corpus=bad, threads=1)
    with pytest.raises(ModelError, match="cannot read"):
        models.build_model(tiny_build(), tmp_path / "m", corpus=tmp_path / "absent.txt", threads=1)


# --- linking a local folder -----------------------------------------------------------------

def local_cfg(path, **extra):
    return {"name": "local-model", "source": "local", "path": str(path), "params_b": 0.001, "finetune": True,
            "trust_remote_code": False, **extra}


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_link_records_a_good_folder(tiny_qwen3, tmp_path):
    manifest = models.link_model(local_cfg(tiny_qwen3), tmp_path / "out", root=tmp_path)
    assert manifest.source == "local" and manifest.trust_remote_code is False
    assert manifest.params > 0 and manifest.resolved_revision.startswith("local-")
    assert models.model_path(tmp_path / "out" / "manifest.json") == Path(tiny_qwen3).resolve()


def test_link_resolves_relative_paths_from_the_project_root(tiny_qwen3, tmp_path):
    copy_model(tiny_qwen3, tmp_path / "weights" / "m")
    manifest = models.link_model(local_cfg("weights/m"), tmp_path / "data" / "models" / "x", root=tmp_path)
    assert Path(manifest.path) == (tmp_path / "weights" / "m").resolve()


def test_link_refuses_pickle_only_weights(tiny_qwen3, tmp_path):
    folder = copy_model(tiny_qwen3, tmp_path / "pickled")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError) as error:
        models.link_model(local_cfg(folder), tmp_path / "out", root=tmp_path)
    message = str(error.value)
    assert "pytorch_model.bin" in message and "safetensors" in message and "local-model" in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_link_refuses_a_folder_without_weights(tiny_qwen3, tmp_path):
    folder = copy_model(tiny_qwen3, tmp_path / "empty")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weights"):
        models.link_model(local_cfg(folder), tmp_path / "out", root=tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("no_config", "no config.json"),
    ("missing_folder", "does not exist"),
    ("truncated", "truncated"),
    ("no_tokenizer", "no tokenizer"),
    ("no_chat_template", "no chat template"),
    ("missing_shard", "lacks weight shards"),
])
def test_link_explains_other_broken_folders(tiny_qwen3, tmp_path, damage, message):
    folder = copy_model(tiny_qwen3, tmp_path / "broken")
    if damage == "no_config":
        (folder / "config.json").unlink()
    elif damage == "missing_folder":
        folder = tmp_path / "nowhere"
    elif damage == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "no_tokenizer":
        for name in models.TOKENIZER_FILES:
            (folder / name).unlink(missing_ok=True)
    elif damage == "no_chat_template":
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    elif damage == "missing_shard":
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
        (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    with pytest.raises(ModelError, match=message):
        models.link_model(local_cfg(folder), tmp_path / "out", root=tmp_path)


def test_trust_remote_code_is_off_by_default_and_recorded_with_a_warning_when_on(tiny_qwen3, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ftmatrix"):
        off = models.link_model(local_cfg(tiny_qwen3), tmp_path / "off", root=tmp_path)
    assert off.trust_remote_code is False and "trust_remote_code" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="ftmatrix"):
        on = models.link_model(local_cfg(tiny_qwen3, trust_remote_code=True), tmp_path / "on", root=tmp_path)
    assert on.trust_remote_code is True
    assert "trust_remote_code is ON" in caplog.text


def test_model_path_of_a_missing_manifest_says_how_to_rebuild(tmp_path):
    with pytest.raises(DataError, match=r"file not found.*snakemake --cores all --force .*x/manifest.json"):
        models.model_path(tmp_path / "data" / "models" / "x" / "manifest.json")


# --- downloading ------------------------------------------------------------------------------

def test_download_fetches_weights_configs_and_tokenizer_but_never_pickles():
    from huggingface_hub.utils import filter_repo_objects

    repo = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja", "README.md",
            "pytorch_model.bin", "training_args.bin", "optimizer.pt", "rng_state.pth", "model.ckpt",
            "weights.pkl", "modeling_custom.py", "LICENSE"]
    fetched = set(filter_repo_objects(repo, allow_patterns=models.ALLOW_PATTERNS,
                                      ignore_patterns=models.IGNORE_PATTERNS))
    assert fetched == {"config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                       "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
                       "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja"}


def hub_cfg(**extra):
    return {"name": "qwen3-0.6b", "source": "hub", "id": "Qwen/Qwen3-0.6B",
            "revision": "c1899de289a04d12100db370d81485cdf75e47ca", "params_b": 0.6, "finetune": True,
            "trust_remote_code": False, **extra}


def test_download_offline_names_the_model_and_the_local_alternative(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_PlantedSecretToken1234567890")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceUnreachable) as error:
            models.download_model(hub_cfg(), tmp_path / "out", hf_home=str(tmp_path / "hf"))
    message = str(error.value)
    assert "Qwen/Qwen3-0.6B" in message and "c1899de289a04d12100db370d81485cdf75e47ca" in message
    assert "source: local" in message
    assert "hf_PlantedSecretToken1234567890" not in message + caplog.text
    assert not (tmp_path / "out" / "manifest.json").exists()


def fake_cache(hf_home: Path, model_dir: Path, repo_id: str, revision: str, commit: str = "a" * 40) -> Path:
    """A Hugging Face cache holding ``model_dir`` as the snapshot of ``repo_id`` at ``revision``."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    return repo / "snapshots" / commit


def test_download_from_the_cache_records_the_commit_and_keeps_the_token_secret(tiny_qwen3, tmp_path, monkeypatch,
                                                                                caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_PlantedSecretToken1234567890")
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = fake_cache(tmp_path / "hf", tiny_qwen3, "Qwen/Qwen3-0.6B", "main", commit)
    out = tmp_path / "data" / "models" / "qwen3-0.6b"
    with caplog.at_level(logging.DEBUG):
        manifest = models.download_model(hub_cfg(revision="main"), out, hf_home=str(tmp_path / "hf"))
    assert manifest.resolved_revision == commit and manifest.revision == "main"
    assert models.model_path(out / "manifest.json") == snapshot
    assert manifest.trust_remote_code is False and manifest.authenticated is True
    written = (out / "manifest.json").read_text()
    assert "hf_PlantedSecretToken1234567890" not in written + caplog.text


def test_download_refuses_a_snapshot_without_safetensors(tiny_qwen3, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = fake_cache(tmp_path / "hf", tiny_qwen3, "Qwen/Qwen3-0.6B", "main")
    (snapshot / "model.safetensors").rename(snapshot / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickle"):
        models.download_model(hub_cfg(revision="main"), tmp_path / "out", hf_home=str(tmp_path / "hf"))
    assert not (tmp_path / "out" / "manifest.json").exists()
