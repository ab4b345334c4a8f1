"""The study grid, in one place: config -> valid variants and cells, and paths -> cells.

A *variant* is one model as it is evaluated: an untuned base, or a base fine-tuned by
one method (full, or LoRA at one rank) on one training task with one seed. A *cell* is
a variant evaluated on one evaluation task. There is no Cartesian junk: a base variant
has no rank (r0), no training task (``none``) and no seed (seed0); full fine-tuning has
no rank (r0); a model with ``finetune: false`` appears only as a base.

Paths follow one pattern, ``{model}/{method}/r{rank}/{train_task}/seed{seed}``, below
each stage's folder, so a result file names its cell and ``cell_from_path`` reads it back.
Adding a dimension (a thinking mode, say) means adding a field here and a segment to the
pattern.

A *run* is one training of a fine-tuned variant at one learning rate
(``{variant}/lr{lr}``, below ``results/<study>/train/``). A variant has one run per rate of
its method's sweep (``train.learning_rate``, or the task's own ``learning_rate``); the
workflow selects one run per variant on the validation split and evaluates only that one,
so cells are variants, never runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

METHODS = ("base", "full", "lora")
NO_TASK = "none"

VARIANT_PATTERN = "{model}/{method}/r{rank}/{train_task}/seed{seed}"
CELL_PATTERN = VARIANT_PATTERN + "/{eval_task}"
RUN_PATTERN = VARIANT_PATTERN + "/lr{lr}"

_VARIANT_RE = re.compile(
    r"(?P<model>[a-z0-9][a-z0-9_.-]*)/(?P<method>base|full|lora)/r(?P<rank>\d+)/"
    r"(?P<train_task>[a-z0-9][a-z0-9_.-]*)/seed(?P<seed>\d+)"
)
_CELL_RE = re.compile(_VARIANT_RE.pattern + r"/(?P<eval_task>[a-z0-9][a-z0-9_.-]*)")
_RUN_RE = re.compile(_VARIANT_RE.pattern + r"/lr(?P<lr>[0-9][0-9.e+-]*)(?=/|$)")


@dataclass(frozen=True, order=True)
class Variant:
    model: str
    method: str
    rank: int = 0
    train_task: str = NO_TASK
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.method == "base" and (self.rank, self.train_task, self.seed) != (0, NO_TASK, 0):
            raise ValueError(f"a base variant has no rank, training task or seed: {self}")
        if self.method == "full" and self.rank != 0:
            raise ValueError(f"full fine-tuning has no rank: {self}")
        if self.method == "lora" and self.rank < 1:
            raise ValueError(f"LoRA needs a rank ≥ 1: {self}")
        if self.method != "base" and self.train_task == NO_TASK:
            raise ValueError(f"a fine-tuned variant needs a training task: {self}")

    @property
    def path(self) -> str:
        return VARIANT_PATTERN.format(**self.as_dict())

    def as_dict(self) -> dict:
        # Spelled out: dataclasses.asdict deep-copies, and the workflow calls this for
        # every job of the DAG (tens of thousands in a large study).
        return {"model": self.model, "method": self.method, "rank": self.rank,
                "train_task": self.train_task, "seed": self.seed}

    @property
    def is_trained(self) -> bool:
        return self.method != "base"

    @property
    def base(self) -> "Variant":
        """The untuned variant this one starts from."""
        return Variant(self.model, "base")

    @property
    def label(self) -> str:
        """A short human-readable name: 'qwen3-0.6b', 'qwen3-0.6b full·arc', 'qwen3-0.6b LoRA r32·arc'."""
        if self.method == "base":
            return self.model
        how = "full" if self.method == "full" else f"LoRA r{self.rank}"
        seed = f" s{self.seed}" if self.seed else ""
        return f"{self.model} {how}·{self.train_task}{seed}"


@dataclass(frozen=True, order=True)
class Cell:
    variant: Variant
    eval_task: str

    @property
    def path(self) -> str:
        return f"{self.variant.path}/{self.eval_task}"

    def as_dict(self) -> dict:
        return {**self.variant.as_dict(), "eval_task": self.eval_task}


def lr_text(rate: float) -> str:
    """A learning rate as it appears in a run's path: Python's shortest round-trip form
    ('0.003', '1e-05'), so the path gives back exactly the configured float."""
    return repr(float(rate))


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def task_seeds(config: dict, task: dict) -> list[int]:
    """The training seeds of a task: its own ``seeds``, else the study's."""
    return _as_list(task.get("seeds") or config["seeds"])


def learning_rates(config: dict, method: str, task_name: str) -> list[float]:
    """The learning rates a method is swept over on a training task: the task's own
    ``learning_rate.<method>``, else ``train.learning_rate.<method>`` (a number or a list)."""
    task = next(t for t in config["tasks"] if t["name"] == task_name)
    own = (task.get("learning_rate") or {}).get(method)
    rates = own if own is not None else config["train"]["learning_rate"][method]
    return [float(r) for r in _as_list(rates)]


def task_epochs(task: dict, train: dict) -> float:
    """The epochs a training task runs: the task's own ``epochs``, else ``train.epochs``."""
    return task.get("epochs") or train["epochs"]


def variants(config: dict) -> list[Variant]:
    """Every variant of the study, bases first, in a stable order."""
    methods = config["methods"]
    ranks = config["lora"]["ranks"]
    out: list[Variant] = []
    for model in config["models"]:
        if "base" in methods:
            out.append(Variant(model["name"], "base"))
    for model in config["models"]:
        if not model["finetune"]:
            continue
        for task_entry in config["tasks"]:
            task = task_entry["name"]
            for seed in task_seeds(config, task_entry):
                if "full" in methods:
                    out.append(Variant(model["name"], "full", 0, task, seed))
                if "lora" in methods:
                    for rank in ranks:
                        out.append(Variant(model["name"], "lora", rank, task, seed))
    return out


def trained_variants(config: dict) -> list[Variant]:
    return [v for v in variants(config) if v.is_trained]


@dataclass(frozen=True, order=True)
class Run:
    """One training of a variant at one learning rate (``lr`` as written in the path)."""
    variant: Variant
    lr: str

    @property
    def learning_rate(self) -> float:
        return float(self.lr)

    @property
    def path(self) -> str:
        return f"{self.variant.path}/lr{self.lr}"

    def as_dict(self) -> dict:
        return {**self.variant.as_dict(), "lr": self.lr}


def runs_of(config: dict, variant: Variant) -> list[Run]:
    """The runs of one fine-tuned variant, one per rate of its sweep, in the sweep's order."""
    return [Run(variant, lr_text(rate)) for rate in learning_rates(config, variant.method, variant.train_task)]


def runs(config: dict) -> list[Run]:
    """Every training run of the study."""
    return [run for variant in trained_variants(config) for run in runs_of(config, variant)]


def cells(config: dict) -> list[Cell]:
    tasks = [t["name"] for t in config["tasks"]]
    return [Cell(v, t) for v in variants(config) for t in tasks]


def columns(items) -> dict[str, list]:
    """Variants, runs or cells as columns, for ``expand(pattern, zip, **columns(items))``."""
    items = list(items)
    if not items:
        return {f.name: [] for f in fields(Variant)}
    rows = [c.as_dict() for c in items]
    return {key: [row[key] for row in rows] for key in rows[0]}


def variant_from_path(path: str) -> Variant:
    """Find the ``{model}/{method}/r{rank}/{train_task}/seed{seed}`` part of a path."""
    match = _VARIANT_RE.search(str(path))
    if not match:
        raise ValueError(f"{path!r} does not contain a variant path like {VARIANT_PATTERN}")
    g = match.groupdict()
    return Variant(g["model"], g["method"], int(g["rank"]), g["train_task"], int(g["seed"]))


def run_from_path(path: str) -> Run:
    """Find the ``{variant}/lr{lr}`` part of a path (a training run's folder)."""
    match = _RUN_RE.search(str(path))
    if not match:
        raise ValueError(f"{path!r} does not contain a run path like {RUN_PATTERN}")
    g = match.groupdict()
    return Run(Variant(g["model"], g["method"], int(g["rank"]), g["train_task"], int(g["seed"])), g["lr"])


def cell_from_path(path: str) -> Cell:
    match = _CELL_RE.search(str(path))
    if not match:
        raise ValueError(f"{path!r} does not contain a cell path like {CELL_PATTERN}")
    g = match.groupdict()
    variant = Variant(g["model"], g["method"], int(g["rank"]), g["train_task"], int(g["seed"]))
    return Cell(variant, g["eval_task"])


def wildcard_constraints(config: dict) -> dict[str, str]:
    """Regexes that pin each wildcard to the configured names."""
    def alternatives(names):
        return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))

    models = [m["name"] for m in config["models"]]
    tasks = [t["name"] for t in config["tasks"]]
    rates = {run.lr for run in runs(config)}
    return {
        "model": alternatives(models),
        "method": "base|full|lora",
        "rank": r"\d+",
        "train_task": alternatives(tasks + [NO_TASK]),
        "eval_task": alternatives(tasks),
        "task": alternatives(tasks),
        "seed": r"\d+",
        "lr": alternatives(rates) or "(?!x)x",
    }
