"""The study configuration: load, validate against schemas/config.schema.yaml, fill defaults.

The same JSON Schema file is used by Snakemake's ``validate()`` in the workflow and
by this module, so a config that passes one passes the other. On top of the schema,
``check`` catches what JSON Schema cannot say (duplicate names, a base-only model in a
study without the base method) and turns every problem into one message that names
the key and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from ftmatrix.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
SCHEMA_PATH = PROJECT_ROOT / "schemas" / "config.schema.yaml"


# The C loader, where PyYAML has it, parses the schema about four times faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)


def _fill_defaults_validator():
    """A JSON Schema (2020-12) validator that writes each property's ``default`` into the instance."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})


_FillingValidator = _fill_defaults_validator()


def key_path(parts: Iterable[Any]) -> str:
    """['models', 0, 'name'] -> 'models[0].name'"""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = key_path(error.absolute_path)
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    v, value = error.validator, error.instance
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        place = "at the top level" if not error.absolute_path else f"in {where}"
        return (f"unknown key {', '.join(repr(k) for k in extra)} {place}; "
                f"allowed keys are: {', '.join(allowed)}. Check the spelling or remove it.")
    if v == "required":
        place = "the study configuration" if not error.absolute_path else where
        return f"{place} is missing the key {error.message.split(' is a required')[0]}; add it."
    if v == "type":
        return (f"{where} must be of type {error.validator_value}, got {value!r} "
                f"({type(value).__name__}).")
    if v == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"{where} is {value!r}; it must be one of: {choices}."
    if v == "const":
        return f"{where} is {value!r}; it must be {error.validator_value!r}."
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[v]
        return f"{where} is {value!r}; it must be {op} {error.validator_value}."
    if v == "minItems":
        return f"{where} is empty or too short; it needs at least {error.validator_value} entr{'y' if error.validator_value == 1 else 'ies'}."
    if v == "uniqueItems":
        return f"{where} lists the same value twice ({value!r}); list each once."
    if v == "pattern" and where.endswith((".kind", ".format")):
        return (f"{where} is {value!r}, which is not a safe name: use lower-case letters, digits, "
                f"'.', '_' and '-', starting with a letter or digit, at most 64 characters.")
    if v in ("pattern", "not") and where.endswith("name"):
        return (f"{where} is {value!r}, which is not a safe name: use lower-case letters, digits, "
                f"'.', '_' and '-', start with a letter or digit, at most 64 characters, and "
                f"not one of none, base, full, lora (it becomes a folder name).")
    if v == "minLength":
        return f"{where} is an empty string; give a value."
    if v == "oneOf":
        # The form the value was meant to have is the one whose complaint is not about type.
        specific = [e for e in error.context or () if e.validator != "type"]
        if specific:
            return _describe(max(specific, key=lambda e: len(e.absolute_path)))
        return f"{where} = {value!r} does not match any accepted form. {hint or ''}".strip()
    text = f"{where}: {error.message}."
    return f"{text} ({hint})" if hint else text


def _sorted_errors(errors: Iterable[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    return sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.validator))


def validate(config: dict, source: str = "config", schema: dict | None = None) -> dict:
    """Return a deep copy of ``config`` with defaults filled; raise ConfigError on any problem."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: the study configuration must be a mapping of keys to values, "
                          f"got {type(config).__name__}.")
    filled = copy.deepcopy(config)
    validator = _FillingValidator(schema or load_schema())
    errors = _sorted_errors(validator.iter_errors(filled))
    problems = []
    seen = set()
    for error in errors:
        text = _describe(error)
        if text not in seen:
            seen.add(text)
            problems.append(text)
    if not problems:
        problems = check(filled)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ConfigError(f"invalid study configuration ({source}):\n{lines}{more}")
    return filled


# The linear layers of transformers' Qwen3ForCausalLM below its LM head: what LoRA can adapt
# in a model the project builds (source: build).
QWEN3_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def target_modules_match(target: str, names) -> list[str]:
    """The linear layers ``lora.target_modules`` adapts: all of them for 'all-linear', else the
    names the string matches whole (PEFT reads a string as a regular expression)."""
    import re

    if target == "all-linear":
        return list(names)
    try:
        pattern = re.compile(target)
    except re.error as exc:
        raise ConfigError(f"lora.target_modules is {target!r}, not a valid regular expression ({exc}).") from None
    return [n for n in names if pattern.fullmatch(n)]


def check(config: dict) -> list[str]:
    """Checks beyond the schema; returns a list of problems (empty when all is well)."""
    problems = []
    for section in ("models", "tasks"):
        names = [entry["name"] for entry in config[section]]
        for name in sorted({n for n in names if names.count(n) > 1}):
            idx = [i for i, n in enumerate(names) if n == name]
            problems.append(f"{section}: the name {name!r} is used by entries {idx}; "
                            f"names must be unique, rename one.")
    methods = config["methods"]
    for i, model in enumerate(config["models"]):
        if not model["finetune"] and "base" not in methods:
            problems.append(f"models[{i}] ({model['name']}) is base-only (finetune: false) but "
                            f"methods has no 'base'; add 'base' to methods or remove the model.")
        if model["source"] == "build":
            b = model["build"]
            if b["num_attention_heads"] % b["num_key_value_heads"]:
                problems.append(f"models[{i}].build.num_attention_heads ({b['num_attention_heads']}) must be "
                                f"a multiple of num_key_value_heads ({b['num_key_value_heads']}).")
            if b["tokenizer"]["source"] == "path" and "path" not in b["tokenizer"]:
                problems.append(f"models[{i}].build.tokenizer has source: path but no path; "
                                f"give the folder of a tokenizer (e.g. ../shared/data/qwen3-tokenizer).")
        if model["source"] == "api":
            problems += check_api_model(config, i)
    target = config["lora"]["target_modules"]
    if "lora" in methods and any(m["finetune"] and m["source"] == "build" for m in config["models"]):
        # Built models are Qwen3: their layers are known before anything is built (other models'
        # are checked by the training job, once the model is loaded).
        try:
            matched = target_modules_match(target, QWEN3_LINEAR_LAYERS)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            if not matched:
                problems.append(f"lora.target_modules is {target!r}, which matches no linear layer of a Qwen3 "
                                f"model ({', '.join(QWEN3_LINEAR_LAYERS)}); use all-linear, one of these names, "
                                f"or a regular expression over them (e.g. '(q|v)_proj').")
    if set(methods) & {"full", "lora"} and not any(m["finetune"] for m in config["models"]):
        problems.append("methods asks for fine-tuning (full/lora) but no model has finetune: true; "
                        "set finetune: true on a model or use methods: [base].")
    return problems + check_vllm_lora(config) + check_task_kinds(config)


def check_vllm_lora(config: dict) -> list[str]:
    """Unmerged LoRA adapters (evaluate.merge_lora: false) through vLLM need ranks vLLM takes."""
    ev = config["evaluate"]
    if ev["merge_lora"] or "lora" not in config["methods"]:
        return []
    from ftmatrix.engines import engine_of
    from ftmatrix.engines.vllm_engine import LORA_RANKS

    uses_vllm = ev["timing_engine"] == "vllm" or any(engine_of(m, ev) == "vllm" for m in config["models"]
                                                     if m["finetune"])
    too_large = [r for r in config["lora"]["ranks"] if r > max(LORA_RANKS)]
    if uses_vllm and too_large:
        return [f"lora.ranks has {', '.join(map(str, too_large))}, above the largest rank vLLM's LoRA support takes "
                f"({max(LORA_RANKS)}), and evaluate.merge_lora is false with the vllm engine; set "
                f"evaluate.merge_lora: true (adapters merged before vLLM loads them) or use engine transformers."]
    return []


def check_api_model(config: dict, i: int) -> list[str]:
    """An endpoint model (source: api) is an untuned base; a server it starts serves a local model
    entry on this machine."""
    model = config["models"][i]
    problems = []
    if model["finetune"]:
        problems.append(f"models[{i}] ({model['name']}) has source: api, which cannot be fine-tuned here; "
                        f"set finetune: false (it is evaluated as an untuned base).")
    serve = model["api"]["serve"]
    if not serve and not model["api"].get("base_url"):
        problems.append(f"models[{i}].api has no base_url; give the endpoint's URL (e.g. https://api.openai.com/v1) "
                        f"or a serve block for a server the workflow starts.")
    if serve:
        others = {m["name"]: m for m in config["models"]}
        served = others.get(serve["model"])
        if served is None or served["source"] == "api":
            local = [n for n, m in others.items() if m["source"] != "api"]
            problems.append(f"models[{i}].api.serve.model is {serve['model']!r}, which is not a model entry with "
                            f"a folder to serve; name one of: {', '.join(local) or '(none)'}.")
    return problems


def check_task_kinds(config: dict) -> list[str]:
    """Each task's kind is registered (in ftmatrix/tasks/ or the study's task_modules folders), its
    local format is one the kind reads, and a demo source names a kind the demo world has."""
    from ftmatrix.demo_world import TASK_KINDS as DEMO_KINDS
    from ftmatrix.tasks import ADD_A_KIND, registry

    try:
        known = registry(config)
    except ConfigError as error:
        return [str(error)]
    problems = []
    for i, task in enumerate(config["tasks"]):
        kind, source = task["kind"], task["source"]
        if kind not in known:
            problems.append(f"tasks[{i}].kind is {kind!r}, which no task module declares; known kinds: "
                            f"{', '.join(known.kinds())}; {ADD_A_KIND}.")
            continue
        formats = known.get(kind).formats
        if source["type"] == "local" and source["format"] not in formats:
            problems.append(f"tasks[{i}].source.format is {source['format']!r}, which task kind {kind!r} does not "
                            f"read; it reads: {', '.join(formats)} ({known.files[kind]}).")
        if source["type"] == "demo" and kind not in DEMO_KINDS:
            problems.append(f"tasks[{i}] ({task['name']}) has source type demo, but the demo world has no task of kind "
                            f"{kind!r}; it has {', '.join(DEMO_KINDS)}. Give this task a hub or local source.")
    return problems


def load(path: str | Path, overrides: Iterable[str | Path] = ()) -> dict:
    """Load a config file, deep-merge study files over it the way Snakemake's --configfile does, validate."""
    config = read_yaml(path)
    for extra in overrides:
        merge(config, read_yaml(extra))
    return validate(config, source=", ".join(str(p) for p in (path, *overrides)))


def read_yaml(path: str | Path) -> dict:
    from ftmatrix.study_yaml import load_study_yaml

    path = Path(path)
    data = load_study_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it must define at least models and tasks.")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study file must be a mapping of keys to values, got {type(data).__name__}.")
    return data


def merge(base: dict, update: dict) -> dict:
    """Snakemake's --configfile semantics: dicts merge key by key, everything else (lists) replaces."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# Where the Hugging Face cache lives, which rules run locally and whether jobs start warm
# change no result: the study hash leaves them out, so pointing a finished study at a shared
# cache, or moving it to a cluster, leaves its provenance as it was.
PLACEMENT_KEYS = ("hf_home", "local_rules", "warm_start")
# Training settings that change how a job keeps its checkpoints and logs, not what it
# learns: a change to them reruns nothing (the job reads them from the config).
TRAIN_BOOKKEEPING_KEYS = ("save_steps", "save_total_limit", "report_to")
# Evaluation settings read by scoring and analysis (the bootstrap, the grading the headline
# uses); a change to them re-scores without generating again.
SCORING_KEYS = ("bootstrap_resamples", "bootstrap_seed", "confidence", "grading")
# Evaluation settings read only by the timing rounds (ftmatrix.timing); a change to them re-times
# without generating the quality pass again, and a quality setting re-times nothing.
TIMING_KEYS = ("latency_samples", "warmup", "timing_rounds", "timing_engine")


def study_hash(config: dict) -> str:
    """The hash of a whole study, written into every result's provenance (never a rerun
    trigger: each job's params are the slice of the config that shapes its output)."""
    return config_hash({key: value for key, value in config.items() if key not in PLACEMENT_KEYS})


def config_hash(config: dict) -> str:
    """A short, stable hash of a (validated) config or config slice."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_path(path: str | Path, root: str | Path = PROJECT_ROOT) -> Path:
    """Relative paths in a config are taken from the project's root (the Snakefile's folder)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(root) / path)


def task_entry(config: dict, name: str) -> dict:
    for entry in config["tasks"]:
        if entry["name"] == name:
            return entry
    raise ConfigError(f"no task named {name!r} in tasks; known: {[t['name'] for t in config['tasks']]}.")
