"""The data stage: read a task's source, normalise it to the example format, split, write.

``prepare_task`` turns one entry of the config's ``tasks`` list into::

    <out_dir>/train.jsonl   examples the model is fine-tuned on
    <out_dir>/valid.jsonl   validation examples: the held-out loss that selects the learning
                            rate (disjoint from train and eval)
    <out_dir>/eval.jsonl    examples it is evaluated on (disjoint from train and valid)
    <out_dir>/meta.json     source, revision, counts, dropped rows and why, fingerprints,
                            licence, how the split was made, provenance

Sources (``task['source']['type']``):
  hub    ``datasets.load_dataset(id, subset, revision=…, split=…)``
  local  files in the hub's schema (``hub_jsonl``, ``hub_parquet``) or a format of the task kind's
         own (its ``TaskKind.formats``); relative paths are taken from the project root
  demo   the seeded demo world, ``data/demo/seed{seed}/{kind}/{train,eval}.jsonl`` (hub schema)

Splitting is deterministic and stable across machines and Python versions: rows are ordered by
``sha256("<data_seed>:<id>")`` and the first ``train_size`` / ``eval_size`` are kept (written in
source order). With an eval split (or eval files), eval rows whose id or normalised text (the
task's ``dedup_key``) also occurs in the training split are dropped. Without one, the eval set
is carved from the training source: rows are taken in hash order and each one claims its
``dedup_key`` group, which then never reaches training. The validation set is then carved
from what is left of the training source the same way (its own hash order,
``sha256("<data_seed>:valid:<id>")``; each row claims its ``dedup_key`` group), and the
training rows are drawn from the rest. So the eval set depends only on the source,
``eval_size`` and the seed, the validation set on those and ``valid_size``, and neither on
``train_size``. Same inputs, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ftmatrix.config import config_hash, resolve_path
from ftmatrix.errors import DataError, SourceUnreachable
from ftmatrix.io import file_sha256, write_jsonl
from ftmatrix.records import TaskMeta

log = logging.getLogger("ftmatrix.data")

WHERE = "_where"  # the key carrying a raw row's location (file and row) for error messages


# --------------------------------------------------------------------------------------
# Reading files (used by the task modules' ``read_local``)
# --------------------------------------------------------------------------------------

def read_jsonl_rows(path: str | Path) -> list[dict]:
    """JSON-lines rows, each tagged with its location ('<path>, line N')."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the task's source paths in the config.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON-lines file.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}).") from None
    rows = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}, line {number}: not UTF-8 text (byte {exc.start}); "
                            f"re-save the file as UTF-8.") from None
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            truncated = number == len(lines) and not raw.endswith(b"\n")
            hint = ("the last line is cut short: the file looks truncated — download or copy it again"
                    if truncated else "fix the line or recreate the file")
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            f"{hint}.") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object per line, got "
                            f"{type(row).__name__}.")
        row[WHERE] = f"{path}, line {number}"
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the file has no rows; point the config at a file with data.")
    return rows


def read_parquet_rows(path: str | Path) -> list[dict]:
    """Parquet rows as dicts (nested structs become dicts of lists), tagged '<path>, row N'."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the task's source paths in the config.")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc}); the file may be truncated or of "
                        f"another format — recreate it, or set the source's format to match it.") from None
    if not rows:
        raise DataError(f"{path}: the file has no rows; point the config at a file with data.")
    for number, row in enumerate(rows, start=1):
        row[WHERE] = f"{path}, row {number}"
    return rows


def read_hub_files(paths: Sequence[str | Path], fmt: str) -> list[dict]:
    """Rows of local files in the hub's schema (``hub_jsonl`` or ``hub_parquet``)."""
    reader = {"hub_jsonl": read_jsonl_rows, "hub_parquet": read_parquet_rows}[fmt]
    rows = []
    for path in paths:
        rows.extend(reader(path))
    return rows


def unsupported_format(kind: str, fmt: str, formats: Iterable[str]) -> DataError:
    return DataError(f"task kind {kind!r} cannot read local files of format {fmt!r}; use one of: "
                     f"{', '.join(formats)} (tasks[…].source.format).")


# --------------------------------------------------------------------------------------
# Checking fields (used by the task modules' ``to_examples``)
# --------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object (mapping)", bool: "true/false"}


def where_of(row: dict, fallback: str) -> str:
    return row.get(WHERE) or fallback


def get_field(row: dict, name: str, kind: type, where: str, *, allow_empty: bool = True) -> Any:
    """``row[name]``, checked: present, of the type, (optionally) not empty. Raises DataError."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object (mapping), got {type(row).__name__}.")
    if name not in row or row[name] is None:
        raise DataError(f"{where}: missing field {name!r}; every row needs it (check the file's format "
                        f"against the task's source.format).")
    value = row[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{where}: field {name!r} should be {_TYPE_NAMES.get(kind, kind.__name__)}, got "
                        f"{type(value).__name__} ({_short(value)}); fix the row or the file's format.")
    if not allow_empty and kind is str and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty; fix or remove the row.")
    return value


def get_str_list(row: dict, name: str, where: str, *, min_items: int = 0) -> list[str]:
    values = get_field(row, name, list, where)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name}[{i}] should be a string, got {type(value).__name__} "
                            f"({_short(value)}).")
    if len(values) < min_items:
        raise DataError(f"{where}: field {name!r} needs at least {min_items} entries, has {len(values)}.")
    return values


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalise_text(text: str) -> str:
    """Text compared for train/eval disjointness: NFKC, lower-case, whitespace collapsed."""
    import unicodedata

    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def content_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:16]}"


def user_message(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant_message(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------------------
# Sources: rows to scan (ids and dedup keys of all rows), then examples of the chosen ones
# --------------------------------------------------------------------------------------

@dataclass
class Scanned:
    position: int
    id: str
    key: str


class ListSource:
    """Rows held in memory (local files, the demo world)."""

    def __init__(self, rows: list[dict], label: str):
        self.rows = rows
        self.label = label
        self._examples: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, position: int) -> str:
        return where_of(self.rows[position], f"{self.label}, row {position + 1}")

    def raw_batches(self, batch_size: int = 10_000):
        for start in range(0, len(self.rows), batch_size):
            yield start, self.rows[start:start + batch_size]

    def examples(self, task, positions: Sequence[int]) -> list[dict]:
        return task.to_examples([self.rows[p] for p in positions], self.label)


class HubSource:
    """A split of a hub dataset: scanned in batches, only the chosen rows materialised."""

    def __init__(self, dataset, label: str):
        self.dataset = dataset
        self.label = label

    def __len__(self) -> int:
        return len(self.dataset)

    def where(self, position: int) -> str:
        return f"{self.label}, row {position + 1}"

    def raw_batches(self, batch_size: int = 10_000):
        for start in range(0, len(self.dataset), batch_size):
            batch = self.dataset[start:start + batch_size]  # dict of columns
            names = list(batch)
            count = len(batch[names[0]]) if names else 0
            rows = [{name: batch[name][i] for name in names} for i in range(count)]
            for i, row in enumerate(rows):
                row[WHERE] = self.where(start + i)
            yield start, rows

    def examples(self, task, positions: Sequence[int]) -> list[dict]:
        rows = self.dataset.select(list(positions)).to_list()
        for position, row in zip(positions, rows):
            row[WHERE] = self.where(position)
        return task.to_examples(rows, self.label)


@dataclass
class ScanResult:
    rows: list[Scanned] = field(default_factory=list)
    available: int = 0
    dropped: dict = field(default_factory=dict)  # reason -> {"count", "examples"}

    def drop(self, reason: str, example: str) -> None:
        entry = self.dropped.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 5:
            entry["examples"].append(example)


def scan(task, source, split: str) -> ScanResult:
    """Validate every row (to_examples), record (position, id, dedup key), drop unusable rows."""
    result = ScanResult(available=len(source))
    first_seen: dict[str, int] = {}
    for start, raw in source.raw_batches():
        examples = task.to_examples(raw, source.label)
        for offset, (row, example) in enumerate(zip(raw, examples)):
            position = start + offset
            reason = task.drop_reason(row) if task.drop_reason else None
            if reason:
                result.drop(reason, example["id"])
                continue
            if example["id"] in first_seen:
                if task.content_ids:
                    result.drop("identical to an earlier row", example["id"])
                    continue
                raise DataError(f"{split} data: duplicate id {example['id']!r} in {source.where(first_seen[example['id']])} "
                                f"and {source.where(position)}; ids must be unique — remove or rename one.")
            first_seen[example["id"]] = position
            result.rows.append(Scanned(position, example["id"], task.dedup_key(row)))
    return result


def hash_order(seed: int, ident: str) -> str:
    """The subsampling order: stable across machines and Python versions (never hash())."""
    return hashlib.sha256(f"{seed}:{ident}".encode("utf-8")).hexdigest()


def split_rows(train: ScanResult, eval_: ScanResult | None, train_size: int, eval_size: int,
               seed: int, valid_size: int = 0) -> tuple[list[Scanned], list[Scanned], list[Scanned], dict]:
    """Choose eval, validation and train rows (see the module docstring). Returns
    (train, eval, valid, split info)."""
    if eval_ is not None:
        train_ids = {r.id for r in train.rows}
        train_keys = {r.key for r in train.rows}
        eval_pool = []
        for r in eval_.rows:
            if r.id in train_ids or r.key in train_keys:
                eval_.drop("also in the training split (same id or normalised text)", r.id)
            else:
                eval_pool.append(r)
        eval_rows = sorted(eval_pool, key=lambda r: hash_order(seed, r.id))[:eval_size]
        train_pool = train.rows
        info = {"method": "given", "excluded_from_train": 0}
    else:
        claimed: set[str] = set()
        eval_rows = []
        for r in sorted(train.rows, key=lambda r: hash_order(seed, r.id)):
            if len(eval_rows) >= eval_size:
                break
            eval_rows.append(r)
            claimed.add(r.key)
        eval_ids = {r.id for r in eval_rows}
        train_pool = [r for r in train.rows if r.key not in claimed]
        excluded = len(train.rows) - len(train_pool) - len(eval_rows)
        info = {"method": "carved", "excluded_from_train": excluded}
        assert not eval_ids & {r.id for r in train_pool}
    valid_rows: list[Scanned] = []
    valid_keys: set[str] = set()
    for r in sorted(train_pool, key=lambda r: hash_order(seed, f"valid:{r.id}")):
        if len(valid_rows) >= valid_size:
            break
        valid_rows.append(r)
        valid_keys.add(r.key)
    pool = [r for r in train_pool if r.key not in valid_keys]
    info["excluded_for_valid"] = len(train_pool) - len(pool) - len(valid_rows)
    train_rows = sorted(pool, key=lambda r: hash_order(seed, r.id))[:train_size]
    for rows in (train_rows, eval_rows, valid_rows):
        rows.sort(key=lambda r: r.position)
    return train_rows, eval_rows, valid_rows, info


# --------------------------------------------------------------------------------------
# Opening a task's source
# --------------------------------------------------------------------------------------

def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _local_sources(task, name: str, source: dict, root: Path):
    fmt = source["format"]
    if fmt not in task.formats:
        raise unsupported_format(task.kind, fmt, task.formats)
    info = {"type": "local", "format": fmt, "revision": source.get("revision", "local"), "files": {}}

    def open_split(key):
        given = _as_list(source.get(key))
        if not given:
            return None
        paths = []
        for p in given:
            path = resolve_path(p, root)
            if not path.is_file():
                raise DataError(f"tasks[{name}].source.{key}: file {p!r} not found (looked at {path}); "
                                f"fix the path (relative paths are taken from the project root).")
            paths.append(path)
            info["files"][str(p)] = file_sha256(path)
        rows = task.read_local([str(p) for p in paths], fmt)
        return ListSource(rows, label=", ".join(str(p) for p in given))

    return open_split("train"), open_split("eval"), info


def _demo_sources(task, name: str, source: dict, demo_dir: Path):
    from ftmatrix.demo_world import TASK_KINDS as DEMO_KINDS

    if task.kind not in DEMO_KINDS:
        raise DataError(f"tasks[{name}]: the demo world has no task of kind {task.kind!r}; it has "
                        f"{', '.join(DEMO_KINDS)}. Give this task a hub or local source.")
    folder = Path(demo_dir) / f"seed{source.get('seed', 0)}" / task.kind
    info = {"type": "demo", "seed": source.get("seed", 0), "revision": f"demo-seed{source.get('seed', 0)}",
            "files": {}}
    splits = []
    for split in ("train", "eval"):
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"tasks[{name}]: the demo world has no {path}; build it first "
                            f"(snakemake data/demo/seed{source.get('seed', 0)}/world.json) or check the seed.")
        info["files"][str(path)] = file_sha256(path)
        splits.append(ListSource(read_hub_files([path], "hub_jsonl"), label=str(path)))
    return splits[0], splits[1], info


def _unreachable(source: dict, exc: Exception, formats: Iterable[str]) -> SourceUnreachable:
    dataset = source["id"] + (f" ({source['subset']})" if source.get("subset") else "")
    return SourceUnreachable(
        f"could not reach the Hugging Face hub for dataset {dataset} at revision {source['revision']} "
        f"({type(exc).__name__}: {exc}). Check the network (and that HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are "
        f"unset), or point the task at local files instead: source: {{type: local, format: "
        f"{' | '.join(formats)}, train: <path>, eval: <path>}}."
    )


_NETWORK_ERRORS = ("ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "Timeout",
                   "ReadTimeout", "ConnectTimeout", "HTTPError", "ProxyError", "SSLError")


def _load_hub_split(source: dict, split: str, formats: Iterable[str] = ("hub_jsonl", "hub_parquet")):
    import datasets

    try:
        return datasets.load_dataset(source["id"], source.get("subset"), revision=source["revision"], split=split)
    except Exception as exc:
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & set(_NETWORK_ERRORS) or isinstance(exc, (ConnectionError, TimeoutError)):
            raise _unreachable(source, exc, formats) from None
        raise DataError(f"could not load split {split!r} of dataset {source['id']} "
                        f"(subset {source.get('subset')}, revision {source['revision']}): {type(exc).__name__}: "
                        f"{exc}. Check the id, subset, revision and split names in the task's source.") from None


def _commit_in_cache_path(dataset) -> str | None:
    """datasets files a hub dataset under the repository commit it resolved the revision to
    (…/<subset>/<version>/<40-hex commit>/…); read it back from the cache files' path."""
    try:
        files = dataset.cache_files
    except Exception:
        return None
    for entry in files or []:
        for part in Path(entry.get("filename", "")).parts:
            if re.fullmatch(r"[0-9a-f]{40}", part):
                return part
    return None


def _resolved_revision(source: dict, dataset=None) -> str | None:
    """The commit the revision pointed to, where datasets or the hub can tell."""
    if re.fullmatch(r"[0-9a-f]{40}", source["revision"]):
        return source["revision"]
    cached = _commit_in_cache_path(dataset) if dataset is not None else None
    if cached:
        return cached
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source["id"], revision=source["revision"], timeout=20).sha
    except Exception:  # the resolved commit is a record, not a requirement
        return None


def _hub_sources(task, source: dict):
    label = f"{source['id']}@{source['revision']}"
    train = HubSource(_load_hub_split(source, source.get("train_split", "train"), task.formats),
                      label=f"{label} split {source.get('train_split', 'train')}")
    eval_split = source.get("eval_split")
    evaluation = (HubSource(_load_hub_split(source, eval_split, task.formats), label=f"{label} split {eval_split}")
                  if eval_split else None)
    info = {"type": "hub", "id": source["id"], "subset": source.get("subset"), "revision": source["revision"],
            "resolved_revision": _resolved_revision(source, train.dataset)}
    return train, evaluation, info


# --------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------

def prepare_task(task_cfg: dict, out_dir: str | Path, data_seed: int, root: str | Path, *,
                 demo_dir: str | Path = "data/demo") -> dict:
    """Read, normalise, split and write one task (see the module docstring). Returns meta.json's content."""
    from ftmatrix.errors import ConfigError
    from ftmatrix.provenance import record
    from ftmatrix.tasks import get_task

    name = task_cfg["name"]
    try:
        task = get_task(task_cfg["kind"])
    except ConfigError as exc:
        raise DataError(f"tasks[{name}].kind: {exc}") from None
    source = task_cfg["source"]
    out_dir = Path(out_dir)
    kind = source["type"]
    if kind == "hub":
        train_src, eval_src, source_info = _hub_sources(task, source)
    elif kind == "local":
        train_src, eval_src, source_info = _local_sources(task, name, source, Path(root))
    elif kind == "demo":
        train_src, eval_src, source_info = _demo_sources(task, name, source, Path(demo_dir))
    else:
        raise DataError(f"tasks[{name}].source.type is {kind!r}; it must be hub, local or demo.")

    train_scan = scan(task, train_src, "train")
    eval_scan = scan(task, eval_src, "eval") if eval_src is not None else None
    train_rows, eval_rows, valid_rows, split_info = split_rows(
        train_scan, eval_scan, task_cfg["train_size"], task_cfg["eval_size"], data_seed, task_cfg["valid_size"])
    for split, rows, scanned in (("train", train_rows, train_scan), ("eval", eval_rows, eval_scan or train_scan),
                                 ("valid", valid_rows, train_scan)):
        if not rows:
            carved = (f" The eval set ({len(eval_rows)} rows) is carved from the same source and its "
                      f"{task.dedup_description} groups ({split_info['excluded_from_train']} more rows) are kept "
                      f"out of training: lower eval_size or give eval files."
                      if split == "train" and split_info["method"] == "carved" and eval_rows else "")
            if split == "train" and valid_rows:
                carved += (f" The validation set takes {len(valid_rows)} rows (and their "
                           f"{task.dedup_description} groups) from the same rows: lower valid_size.")
            raise DataError(f"task {name}: no usable {split} rows after filtering (rows available: "
                            f"{scanned.available}; dropped: {_dropped_summary(scanned.dropped)}); check the "
                            f"task's source and sizes.{carved}")

    train_examples = train_src.examples(task, [r.position for r in train_rows])
    valid_examples = train_src.examples(task, [r.position for r in valid_rows])
    eval_source = eval_src if eval_src is not None else train_src
    eval_examples = eval_source.examples(task, [r.position for r in eval_rows])

    train_path, eval_path, valid_path = out_dir / "train.jsonl", out_dir / "eval.jsonl", out_dir / "valid.jsonl"
    write_jsonl(train_path, train_examples)
    write_jsonl(valid_path, valid_examples)
    write_jsonl(eval_path, eval_examples)

    for split, wanted, got in (("train", task_cfg["train_size"], len(train_examples)),
                               ("eval", task_cfg["eval_size"], len(eval_examples)),
                               ("valid", task_cfg["valid_size"], len(valid_examples))):
        if got < wanted:
            log.warning("task %s: %s_size is %d but only %d usable rows exist; wrote %d", name, split, wanted,
                        got, got)
    licence = task_cfg.get("licence", "unknown")
    if licence == "unknown" and task_cfg["source"]["type"] == "demo":
        licence = "synthetic (ftmatrix demo world)"
    meta = TaskMeta(
        task=name,
        kind=task.kind,
        source=source_info,
        revision=source_info.get("resolved_revision") or source_info["revision"],
        licence=licence,
        data_seed=data_seed,
        counts={
            "train": {"available": train_scan.available, "usable": len(train_scan.rows),
                      "requested": task_cfg["train_size"], "written": len(train_examples)},
            "eval": {"available": (eval_scan or train_scan).available,
                     "usable": len(eval_scan.rows) if eval_scan else None,
                     "requested": task_cfg["eval_size"], "written": len(eval_examples)},
            "valid": {"requested": task_cfg["valid_size"], "written": len(valid_examples)},
        },
        dropped={"train": train_scan.dropped, "eval": eval_scan.dropped if eval_scan else {}},
        split=_split_description(task, source, split_info, data_seed),
        fingerprints={"train.jsonl": file_sha256(train_path), "valid.jsonl": file_sha256(valid_path),
                      "eval.jsonl": file_sha256(eval_path)},
        provenance=record(config_hash=config_hash(task_cfg)),
    )
    meta.write(out_dir / "meta.json")
    log.info("task %s (%s, %s): %d train / %d eval examples written to %s", name, task.kind, kind,
             len(train_examples), len(eval_examples), out_dir)
    return meta


def _dropped_summary(dropped: dict) -> str:
    if not dropped:
        return "none"
    return "; ".join(f"{entry['count']} {reason}" for reason, entry in dropped.items())


def _split_description(task, source: dict, info: dict, seed: int) -> dict:
    order = f"rows ordered by sha256('{seed}:<id>'), the first train_size / eval_size kept, written in source order"
    if info["method"] == "given":
        if source["type"] == "hub":
            eval_from = f"hub split {source.get('eval_split')!r}"
        elif source["type"] == "local":
            eval_from = "the source's eval files"
        else:
            eval_from = "the demo world's eval file"
        how = (f"eval from {eval_from}; eval rows sharing an id or the {task.dedup_description} with any "
               f"training row are dropped")
    else:
        how = (f"no eval split: eval carved from the training source — rows taken in hash order, each "
               f"claiming its {task.dedup_description}, which is then kept out of training "
               f"({info['excluded_from_train']} training rows excluded that way)")
    how += (f"; validation carved from the remaining training rows in their own hash order "
            f"(sha256('{seed}:valid:<id>')), each claiming its {task.dedup_description} "
            f"({info['excluded_for_valid']} more training rows excluded that way)")
    return {"method": info["method"], "description": how, "disjoint_by": task.dedup_description,
            "order": order, "seed": seed, "excluded_from_train": info["excluded_from_train"],
            "excluded_for_valid": info["excluded_for_valid"]}
