"""Models: download from the hub, build a tiny Qwen3, or link a local folder.

Every model ends up described by ``data/<study>/models/{model}/manifest.json``
(``ftmatrix.records.ModelManifest``), written last (atomically): the rule's declared output.
Other stages read it with ``load_manifest`` and find the weights with ``model_path``, then
load them with::

    AutoModelForCausalLM.from_pretrained(path, use_safetensors=True,
                                         trust_remote_code=manifest.trust_remote_code)

Safety rules, enforced here for every source:
- only safetensors weights are accepted: a folder holding only pickle files (``*.bin``,
  ``*.pt`` …) is refused, because unpickling can run arbitrary code;
- ``trust_remote_code`` is off unless the config turns it on, and then it is logged as a
  warning and recorded in the manifest;
- a Hugging Face token is read from ``HF_TOKEN`` only, and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import struct
import time
from pathlib import Path

from ftmatrix import io, provenance
from ftmatrix.config import resolve_path
from ftmatrix.errors import ModelError, SourceUnreachable
from ftmatrix.records import ModelManifest

log = logging.getLogger("ftmatrix.models")

# What snapshot_download may fetch: weights as safetensors, configs, tokenizer files, templates.
ALLOW_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "*.txt", "*.jinja", "*.model",
                  "*.tiktoken"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
IGNORE_PATTERNS = [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
# How text is split before BPE merges (see train_tokenizer).
PRE_TOKENIZER_PATTERN = r"\p{L}+ ?|\p{N}+ ?|[^\p{L}\p{N}\s]+ ?|\s+"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


# ---------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------

def load_manifest(path: str | Path) -> ModelManifest:
    """Read a model manifest; a DataError names the file, the key and the command that rebuilds it."""
    return ModelManifest.read(path)


def model_path(manifest_path: str | Path) -> Path:
    """The folder of the model a manifest describes (config.json, *.safetensors, tokenizer)."""
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path)
    # The relative path first: it still holds when the whole tree was moved.
    for candidate in (manifest_path.parent / manifest.path_from_manifest, Path(manifest.path)):
        if (candidate / "config.json").is_file():
            return Path(os.path.normpath(candidate))
    raise ModelError(f"{manifest_path}: the model folder {manifest.path} it points at has no config.json "
                     f"(moved or deleted?); rebuild it with `snakemake --cores all --force {manifest_path}` "
                     f"(with the study's --configfile).")


def _write_manifest(out_dir: Path, manifest: ModelManifest) -> ModelManifest:
    manifest.write(out_dir / "manifest.json")
    return manifest


# ---------------------------------------------------------------------------------------
# Checking a model folder
# ---------------------------------------------------------------------------------------

def _safetensors_params(path: Path) -> int:
    """Number of parameters in a .safetensors file, read from its header (no weights loaded)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than its header")
            (length,) = struct.unpack("<Q", raw)
            if length > 100_000_000:
                raise ValueError("implausible header length")
            header = json.loads(fh.read(length))
        size = path.stat().st_size
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({exc}); it may be truncated — "
                         f"download or copy it again.") from None
    total, end = 0, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        total += math.prod(info["shape"])
        end = max(end, info["data_offsets"][1])
    if 8 + length + end > size:
        raise ModelError(f"{path}: the file is shorter than its header says ({size} bytes); it is truncated — "
                         f"download or copy it again.")
    return total


def check_model_folder(folder: Path, where: str, trust_remote_code: bool = False) -> dict:
    """Check a model folder: config.json, safetensors weights (never pickle), tokenizer with a chat template.

    Returns facts about it: parameter count, weight files, model type, fingerprint.
    ``where`` names the config entry in error messages.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{where}: the model folder {folder} does not exist or is not a folder; "
                         f"check the path.")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{where}: {folder} has no config.json, so it is not a Hugging Face model folder; "
                         f"point the path at the folder that holds config.json and the *.safetensors weights.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where}: {config_file} is not valid JSON ({exc}); fix or replace it.") from None
    weights = sorted(p for p in folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(
                f"{where}: {folder} holds only pickle weights ({', '.join(pickles)}). Pickle files can run "
                f"code when loaded, so ftmatrix loads safetensors only. Convert them, in an environment you "
                f"trust: AutoModelForCausalLM.from_pretrained('{folder}').save_pretrained('<new folder>') "
                f"writes model.safetensors; or download the model's safetensors files.")
        raise ModelError(f"{where}: {folder} has no weights (no *.safetensors file); copy the model's "
                         f"model*.safetensors files into it, or point the path at the folder that has them.")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise ModelError(f"{where}: {index} is not a valid weight index ({exc}); download it again.") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelError(f"{where}: {folder} lacks weight shards {', '.join(missing)} listed in "
                             f"{index.name}; the download is incomplete — download it again.")
        weights = [folder / s for s in shards]
    params = sum(_safetensors_params(p) for p in weights)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"{where}: {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the "
                         f"model's tokenizer files into the folder.")
    if not _has_chat_template(folder):
        raise ModelError(f"{where}: the tokenizer in {folder} has no chat template; the study renders every "
                         f"prompt with the model's chat template, so use a chat model's tokenizer files "
                         f"(tokenizer_config.json with chat_template, or chat_template.jinja).")
    model_type = config.get("model_type")
    if config.get("auto_map") and not trust_remote_code:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if model_type not in CONFIG_MAPPING_NAMES:
            raise ModelError(f"{where}: the model type {model_type!r} in {folder} is not built into transformers; "
                             f"it needs the code shipped with the model. Set trust_remote_code: true for this "
                             f"model only if you trust its source.")
        log.warning("%s: %s ships its own code (auto_map), which is ignored: transformers' built-in %r is "
                    "used (trust_remote_code is off).", where, folder, model_type)
    # Every byte of every file that decides the model's behaviour is hashed (hashing a file costs
    # less than loading it): the fingerprint changes with any change of weights, config or tokenizer.
    files = folder_files_sha256(folder)
    for path in weights:
        bad = nonfinite_tensors(path)
        if bad:
            listed = ", ".join(f"{name} ({count:,} values)" for name, count in bad[:5])
            more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
            raise ModelError(f"{where}: {path} holds NaN or infinite weights: {listed}{more}. No job may use "
                             f"these weights; replace the file with a good copy (download or copy it again).")
    architecture = check_architecture(folder, where, trust_remote_code=trust_remote_code)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode())
    return {"params": params, "weights": [p.name for p in weights], "model_type": model_type,
            "architectures": config.get("architectures"), "fingerprint": digest.hexdigest()[:16],
            "files_sha256": files, "model_class": architecture["model_class"]}


# The files of a model folder that decide what the model does: weights, configs, tokenizer,
# chat template. (Not the manifest a built model keeps beside them, nor logs.)
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".jinja", ".model", ".tiktoken")


def model_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.suffix in MODEL_FILE_SUFFIXES and p.name != "manifest.json" and not p.name.startswith(".")
                  and p.is_file())


def folder_files_sha256(folder: str | Path) -> dict:
    """{file name: sha256} of a model folder's files (``model_files``)."""
    return {p.name: io.file_sha256(p) for p in model_files(folder)}


def folder_signature(folder: str | Path) -> list | None:
    """Name, size and modification time (ns) of each file of a model folder, from ``stat`` alone
    (cheap enough for every parse of the workflow); None when the folder is not there.

    link_model takes it as a param, so any change to a linked folder's files — a weight file
    replaced, added or removed, even by a copy that keeps an older modification time — reruns
    link_model (which hashes every file again) and, after it, every job that used the model."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in model_files(folder)]


# Bit masks of the exponent field per safetensors float type: a value is NaN or infinite
# exactly when every exponent bit is set (FP8 E4M3 has no infinity; its NaN is S1111111).
_EXPONENT_MASKS = {"F64": ("<u8", 0x7FF0000000000000), "F32": ("<u4", 0x7F800000), "F16": ("<u2", 0x7C00),
                   "BF16": ("<u2", 0x7F80), "F8_E5M2": ("u1", 0x7C), "F8_E4M3": ("u1", 0x7F)}


def nonfinite_tensors(path: str | Path, chunk: int = 1 << 24) -> list[tuple[str, int]]:
    """[(tensor name, count of NaN / infinite values)] of a safetensors file, read from its raw
    bytes in chunks (no framework, bounded memory); integer tensors cannot hold either."""
    import numpy as np

    path = Path(path)
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length) if path.stat().st_size > 8 + length \
        else np.zeros(0, dtype=np.uint8)
    bad = []
    for name, info in sorted(header.items()):
        if name == "__metadata__" or info["dtype"] not in _EXPONENT_MASKS:
            continue
        dtype, mask = _EXPONENT_MASKS[info["dtype"]]
        start, end = info["data_offsets"]
        values = np.frombuffer(data[start:end], dtype=dtype) if end > start else np.zeros(0, dtype=dtype)
        count = 0
        for at in range(0, len(values), chunk):
            part = values[at:at + chunk]
            count += int(np.count_nonzero((part & np.array(mask, dtype=dtype)) == mask))
        if count:
            bad.append((name, count))
    return bad


def loading_report(info: dict) -> str:
    """One line from transformers' loading info: what was missing, unexpected or mismatched."""
    parts = []
    for key, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"),
                       ("mismatched_keys", "mismatched")):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or [])
        listed = ", ".join(names[:8]) + (f" … ({len(names)} in all)" if len(names) > 8 else "")
        parts.append(f"{label}: {listed or 'none'}")
    return "; ".join(parts)


def refuse_partial_load(info: dict, folder: str | Path, where: str, model_class: str) -> None:
    """A ModelError naming the tensors when a load left a weight missing, unexpected or of the
    wrong shape: such a model is partly random, and would be evaluated as if it were the one named."""
    if any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")):
        raise ModelError(f"{where}: the weights in {folder} do not fit the architecture its config.json names "
                         f"({model_class}): {loading_report(info)}. The config belongs to another model family "
                         f"or the weights to another model; fix config.json (model_type, architectures) or "
                         f"point the path at the matching folder.")


def check_architecture(folder: Path, where: str, trust_remote_code: bool = False) -> dict:
    """Build the model on the meta device (no weights materialised) exactly as the jobs will load
    it, and refuse a config that is no causal LM, or weights that leave a tensor missing,
    unexpected or misshapen."""
    import transformers
    from transformers import AutoModelForCausalLM

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()   # the report is ours, below
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, device_map="meta", use_safetensors=True,
                                                           trust_remote_code=trust_remote_code,
                                                           output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{where}: {folder} cannot be loaded as a causal language model ({exc}); the study "
                         f"fine-tunes and generates with causal LMs only — point the path at one.") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    model_class = type(model).__name__
    refuse_partial_load(info, folder, where, model_class)
    log.info("%s: %s loads as %s; %s", where, folder, model_class, loading_report(info))
    return {"model_class": model_class}


def load_causal_lm(path: str | Path, *, where: str, **kwargs):
    """``AutoModelForCausalLM.from_pretrained`` for every job that loads weights: the loading report
    goes to the job's log, and a load with a missing, unexpected or misshapen tensor is refused."""
    import transformers
    from transformers import AutoModelForCausalLM

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    log.info("loaded %s as %s; %s", path, type(model).__name__, loading_report(info))
    refuse_partial_load(info, path, where, type(model).__name__)
    return model


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except ValueError:
            return False
    return False


def _warn_remote_code(model_cfg: dict) -> bool:
    trust = model_cfg["trust_remote_code"]
    if trust:
        log.warning("models: trust_remote_code is ON for %s: Python code shipped with this model will run when "
                    "it loads. Recorded in its manifest and every result.", model_cfg["name"])
    return trust


# ---------------------------------------------------------------------------------------
# link_model: a local folder
# ---------------------------------------------------------------------------------------

def link_model(model_cfg: dict, out_dir: str | Path, root: str | Path) -> dict:
    """Check a local model folder and write a manifest pointing at it."""
    out_dir = Path(out_dir)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    name = model_cfg["name"]
    where = f"models[{name}].path"
    folder = resolve_path(model_cfg["path"], root).resolve()
    trust = _warn_remote_code(model_cfg)
    facts = check_model_folder(folder, where, trust_remote_code=trust)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = ModelManifest(
        name=name, source="local", path=str(folder), path_from_manifest=os.path.relpath(folder, out_dir.resolve()),
        id=model_cfg.get("id") or str(folder), revision=model_cfg.get("revision") or "local",
        resolved_revision=f"local-{facts['fingerprint']}", params=facts["params"],
        trust_remote_code=trust, use_safetensors=True,
        model_type=facts["model_type"], architectures=facts["architectures"],
        weights=facts["weights"], files_sha256=facts["files_sha256"], model_class=facts["model_class"],
        provenance=provenance.record(),
    )
    log.info("linked %s: %s (%s parameters, %s)", name, folder, f"{facts['params']:,}", facts["model_type"])
    return _write_manifest(out_dir, manifest)


# ---------------------------------------------------------------------------------------
# download_model: the hub at a pinned revision
# ---------------------------------------------------------------------------------------

def hub_token() -> str | None:
    """The Hugging Face token, from the environment only (HF_TOKEN)."""
    return os.environ.get("HF_TOKEN") or None


def scrub(text: str) -> str:
    """Remove the token from text that may reach a log or a message."""
    token = hub_token()
    return text.replace(token, "***") if token else text


def download_model(model_cfg: dict, out_dir: str | Path, hf_home: str | None = None) -> dict:
    """snapshot_download at the pinned revision (safetensors, configs and tokenizer only); write the manifest."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    out_dir = Path(out_dir)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    name, repo_id, revision = model_cfg["name"], model_cfg["id"], model_cfg["revision"]
    trust = _warn_remote_code(model_cfg)
    token = hub_token()
    cache_dir = Path(hf_home).expanduser() / "hub" if hf_home else None
    where = f"models[{name}] ({repo_id} @ {revision})"
    local_hint = ("To use a copy you already have, set this model's source: local and path: <folder with "
                  "config.json, *.safetensors and the tokenizer> in the study config.")
    allow = ALLOW_PATTERNS + (["*.py"] if trust else [])
    log.info("downloading %s @ %s (safetensors only)%s", repo_id, revision, " with HF_TOKEN" if token else "")
    started = time.perf_counter()
    try:
        folder = Path(snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                        allow_patterns=allow, ignore_patterns=IGNORE_PATTERNS,
                                        token=token or False))
    except GatedRepoError:
        raise ModelError(f"{where}: the repository is gated; accept its terms on huggingface.co and set "
                         f"HF_TOKEN in the environment to a token with access.") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{where}: no such model repository on the hub (or it is private); check the id, "
                         f"or set HF_TOKEN for a private one.") from None
    except RevisionNotFoundError:
        raise ModelError(f"{where}: the revision {revision!r} does not exist in {repo_id}; use a commit hash, "
                         f"branch or tag of that repository.") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        reason = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") \
            else "the hub could not be reached"
        raise SourceUnreachable(f"{where}: cannot download the model ({reason}) and it is not in the Hugging "
                                f"Face cache. {local_hint} ({scrub(str(exc).splitlines()[0])})") from None
    except OSError as exc:  # network errors that surface as OSError (connection refused, DNS …)
        raise SourceUnreachable(f"{where}: the hub could not be reached ({scrub(str(exc))}). {local_hint}") from None
    facts = check_model_folder(folder, where, trust_remote_code=trust)
    resolved = folder.name if len(folder.name) == 40 else facts["fingerprint"]
    manifest = ModelManifest(
        name=name, source="hub", path=str(folder), path_from_manifest=os.path.relpath(folder, out_dir.resolve()),
        id=repo_id, revision=revision, resolved_revision=resolved, params=facts["params"],
        trust_remote_code=trust, use_safetensors=True,
        model_type=facts["model_type"], architectures=facts["architectures"], weights=facts["weights"],
        files_sha256=facts["files_sha256"], model_class=facts["model_class"],
        authenticated=token is not None, download_s=round(time.perf_counter() - started, 2),
        provenance=provenance.record(),
    )
    log.info("downloaded %s @ %s -> %s (%s parameters)", repo_id, resolved, folder, f"{facts['params']:,}")
    return _write_manifest(out_dir, manifest)


# ---------------------------------------------------------------------------------------
# build_model: a tiny Qwen3 with a tokenizer, briefly pretrained
# ---------------------------------------------------------------------------------------

def corpus_text(corpus: str | Path | None) -> tuple[str | None, dict]:
    """The pretraining text and its description, from a world.json (demo corpus) or a text file."""
    if corpus is None:
        return None, {"corpus": "none"}
    corpus = Path(corpus)
    if corpus.name == "world.json":
        from ftmatrix.demo_world import corpus_path

        corpus = corpus_path(corpus)
    try:
        data = corpus.read_bytes()
    except OSError as exc:
        raise ModelError(f"build.corpus: cannot read {corpus} ({exc.strerror}); check the path.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"build.corpus: {corpus} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8.") from None
    if not text.strip():
        raise ModelError(f"build.corpus: {corpus} is empty; give a text file to pretrain on, or corpus: none.")
    return text, {"corpus": str(corpus), "corpus_sha256": hashlib.sha256(data).hexdigest(),
                  "corpus_characters": len(text)}


def train_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE tokenizer trained on ``text`` with ChatML special tokens and the project's chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ftmatrix.chat_template import CHAT_TEMPLATE, END_OF_TEXT, IM_END, IM_START, THINK_CLOSE, THINK_OPEN

    special = [END_OF_TEXT, IM_START, IM_END]
    markers = [THINK_OPEN, THINK_CLOSE]
    for token in special + markers:
        text = text.replace(token, "\n")
    tokenizer = Tokenizer(models.BPE())
    # Words and numbers carry the space that follows them (not, as in GPT-2, the one before),
    # and numbers never merge with letters: so a word or number is the same token inside a
    # passage and at the start of an answer, and "3 + 8 = 11" is five tokens, not eight with
    # a space token after each number, which lets a tiny model learn to copy and add.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(markers), min_frequency=2, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(text.split("\n\n"), trainer=trainer)
    # Like Qwen3: <think> and </think> are single tokens but not special, so decoded text keeps them.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in markers])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=IM_END, pad_token=END_OF_TEXT,
                                      bos_token=None, unk_token=None, padding_side="right")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def load_tokenizer(path: str | Path, where: str):
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{where}: the tokenizer folder {path} does not exist; check build.tokenizer.path.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}: cannot load a tokenizer from {path} ({exc}); it needs tokenizer.json or "
                         f"vocab.json + merges.txt, and tokenizer_config.json.") from None
    if not tokenizer.chat_template:
        raise ModelError(f"{where}: the tokenizer in {path} has no chat template; use a chat tokenizer "
                         f"(e.g. ../shared/data/qwen3-tokenizer) or build.tokenizer.source: train.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _end_of_turn_id(tokenizer) -> int:
    from ftmatrix.chat_template import IM_END

    token_id = tokenizer.convert_tokens_to_ids(IM_END)
    if token_id is None or token_id == tokenizer.unk_token_id:
        token_id = tokenizer.eos_token_id
    return token_id


def qwen3_config(build: dict, tokenizer):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=build["hidden_size"],
        intermediate_size=build["intermediate_size"],
        num_hidden_layers=build["num_hidden_layers"],
        num_attention_heads=build["num_attention_heads"],
        num_key_value_heads=build["num_key_value_heads"],
        head_dim=build["head_dim"],
        max_position_embeddings=build["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=_end_of_turn_id(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )


def pretrain(model, token_ids, build: dict, document_end: int | None = None, log_every: int | None = None) -> dict:
    """Next-token training on windows of the corpus: AdamW, warm-up then cosine decay; seeded.

    Windows start where a document starts (after ``document_end``) when the corpus marks its
    documents, so a short document — a question with its answer — is seen whole.
    """
    import torch

    steps, batch, seq_len = build["pretrain_steps"], build["pretrain_batch_size"], build["pretrain_seq_len"]
    ids = torch.tensor(token_ids, dtype=torch.long)
    # The last 5 % of the corpus is held out to measure what the model learnt.
    split = int(len(ids) * 0.95)
    train_ids, heldout_ids = ids[:split], ids[split:]
    seq_len = min(seq_len, len(train_ids) - 1)
    if seq_len < 8:
        raise ModelError(f"build.corpus: the corpus has only {len(ids)} tokens, too few to pretrain on; "
                         f"give a longer text, or pretrain_steps: 0.")
    last_start = len(train_ids) - seq_len
    starts_at = None
    if document_end is not None:
        starts_at = (train_ids[:last_start] == document_end).nonzero().flatten() + 1
        starts_at = starts_at[starts_at < last_start]
        if len(starts_at) < 2 * batch:
            starts_at = None
    generator = torch.Generator().manual_seed(build["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=build["pretrain_lr"], betas=(0.9, 0.95),
                                  weight_decay=0.01)
    warmup = max(1, steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    log_every = log_every or max(1, steps // 10)
    curve, started, cpu_started = [], time.perf_counter(), time.process_time()
    model.train()
    for step in range(steps):
        if starts_at is None:
            starts = torch.randint(0, last_start, (batch,), generator=generator)
        else:
            starts = starts_at[torch.randint(0, len(starts_at), (batch,), generator=generator)]
        window = torch.stack([train_ids[s: s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=window, labels=window).loss
        if not torch.isfinite(loss):
            raise ModelError(f"build: the pretraining loss became {loss.item()} at step {step + 1}; lower "
                             f"build.pretrain_lr and run again.")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % log_every == 0 or step == 0 or step + 1 == steps:
            curve.append([step + 1, round(loss.item(), 4)])
            log.info("pretrain step %d/%d  loss %.3f  (%.1f s)", step + 1, steps, loss.item(),
                     time.perf_counter() - started)
    model.eval()
    return {"steps": steps, "batch_size": batch, "seq_len": seq_len, "lr": build["pretrain_lr"],
            "windows": "random" if starts_at is None else "document starts",
            "tokens_seen": steps * batch * seq_len, "corpus_tokens": len(ids), "heldout_tokens": len(heldout_ids),
            "loss_curve": curve, "final_loss": curve[-1][1] if curve else None,
            "heldout_loss": heldout_loss(model, heldout_ids, seq_len), "wall_s": round(time.perf_counter() - started, 2),
            "cpu_s": round(time.process_time() - cpu_started, 2)}


def heldout_loss(model, ids, seq_len: int) -> float | None:
    """Mean next-token loss over consecutive windows of held-out tokens."""
    import torch

    windows = [ids[i: i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    if not windows:
        return None
    with torch.no_grad():
        losses = [model(input_ids=torch.stack(windows[i: i + 16]), labels=torch.stack(windows[i: i + 16])).loss.item()
                  for i in range(0, len(windows), 16)]
    return round(sum(losses) / len(losses), 4)


def build_model(model_cfg: dict, out_dir: str | Path, corpus: str | Path | None, threads: int = 1,
                root: str | Path | None = None) -> dict:
    """Build a Qwen3 of the configured sizes with a tokenizer, pretrain it briefly, save it as safetensors."""
    import torch
    from transformers import Qwen3ForCausalLM

    out_dir = Path(out_dir)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    name, build = model_cfg["name"], model_cfg["build"]
    where = f"models[{name}].build"
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(threads)))
    if build["corpus"] == "none":
        corpus = None
    text, corpus_info = corpus_text(corpus)

    tok_cfg = build["tokenizer"]
    if tok_cfg["source"] == "path":
        tok_path = resolve_path(tok_cfg["path"], root) if root else Path(tok_cfg["path"])
        tokenizer = load_tokenizer(tok_path, f"{where}.tokenizer")
        tokenizer_info = {"source": "path", "path": str(tok_path)}
    else:
        if text is None:
            raise ModelError(f"{where}.tokenizer: source 'train' needs a corpus to train on, but corpus is "
                             f"'none'; set build.tokenizer.source: path (e.g. ../shared/data/qwen3-tokenizer) "
                             f"or give a corpus.")
        tokenizer = train_tokenizer(text, tok_cfg["vocab_size"])
        tokenizer_info = {"source": "train", "trained_vocab_size": tok_cfg["vocab_size"],
                          "kind": "byte-level BPE", "pre_tokenizer": PRE_TOKENIZER_PATTERN}
    tokenizer_info.update({"vocab_size": len(tokenizer), "eos_token": tokenizer.eos_token,
                           "pad_token": tokenizer.pad_token,
                           "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()[:16]})

    torch.manual_seed(build["seed"])
    config = qwen3_config(build, tokenizer)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    log.info("building %s: Qwen3 with %s parameters, vocabulary %d", name, f"{model.num_parameters():,}",
             len(tokenizer))

    if text is not None and build["pretrain_steps"] > 0:
        token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        from ftmatrix.chat_template import END_OF_TEXT

        pretraining = pretrain(model, token_ids, build, document_end=tokenizer.convert_tokens_to_ids(END_OF_TEXT))
        pretraining["corpus_tokens_per_character"] = round(len(token_ids) / len(text), 4)
    else:
        pretraining = {"steps": 0, "note": "random weights (no pretraining)"}

    # Stage everything beside the final folder and move it in; the manifest comes last.
    staging = out_dir / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    io.share_modes(staging)
    for path in sorted(out_dir.iterdir()):  # files of an earlier build must not mix with the new ones
        if path.is_file() and path.suffix in (".json", ".safetensors", ".txt", ".jinja", ".model"):
            path.unlink()
    for path in sorted(staging.iterdir()):
        os.replace(path, out_dir / path.name)
    staging.rmdir()
    facts = check_model_folder(out_dir, where)
    weights_sha = io.file_sha256(out_dir / "model.safetensors")
    manifest = ModelManifest(
        name=name, source="build", path=str(out_dir), path_from_manifest=".",
        id=f"ftmatrix-build/{name}", revision="build", resolved_revision=weights_sha[:16],
        params=facts["params"], trust_remote_code=False, use_safetensors=True,
        model_type="qwen3", architectures=["Qwen3ForCausalLM"], weights=facts["weights"],
        files_sha256=facts["files_sha256"], model_class=facts["model_class"],
        weights_sha256=weights_sha, seed=build["seed"], build=build,
        sizes={k: getattr(config, k) for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                "num_hidden_layers", "num_attention_heads",
                                                "num_key_value_heads", "head_dim")},
        tokenizer=tokenizer_info, **corpus_info, pretraining=pretraining, threads=torch.get_num_threads(),
        wall_s=round(time.perf_counter() - started, 2),
        provenance=provenance.record(device=provenance.device_info()),
    )
    log.info("built %s: %s parameters, held-out loss %s, %.1f s", name, f"{facts['params']:,}",
             pretraining.get("heldout_loss"), manifest.wall_s)
    return _write_manifest(out_dir, manifest)
