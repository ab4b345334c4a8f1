"""The task registry: one module per task kind (lm-evaluation-harness style).

A task kind is one Python module that defines ``TASK = TaskKind(kind=…, …)``
(see ftmatrix/tasks/base.py): how to read its sources into hub-schema rows, turn a row into
the example format, extract an answer from generated text, score it, the metrics it reports
and how the journal names them. Nothing outside this package knows any kind by name.

Kinds are discovered, never listed:

- every module of this package that defines ``TASK`` (``base`` is the interface, not a kind);
- every ``*.py`` file (not starting with ``_``) in the folders a study lists under the config
  key ``task_modules`` (relative paths are taken from the project root), loaded from its
  file under a module name of its own.

A kind's name is its ``TASK.kind``; two modules claiming one kind is an error naming both files.

Each process that resolves a kind sees the study's folders: ``ftmatrix.config.check`` passes
the config to ``registry(config)``, and every workflow script calls ``use_config`` (through
``ftmatrix.workflow.run_step``) before it does any work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ftmatrix.errors import ConfigError
from ftmatrix.tasks.base import TaskKind

PACKAGE_DIR = Path(__file__).resolve().parent
KIND_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ADD_A_KIND = ("to add one, write a module that defines TASK = TaskKind(kind=..., ...) in ftmatrix/tasks/ or in a "
              "folder listed under task_modules in the study file (README: 'Add a task')")


@dataclass(frozen=True)
class Registry:
    """The task kinds one study can use: kind -> TaskKind, and the file that declares each."""
    tasks: dict
    files: dict
    folders: tuple = ()

    def kinds(self) -> list[str]:
        return sorted(self.tasks)

    def get(self, kind: str) -> TaskKind:
        try:
            return self.tasks[kind]
        except KeyError:
            raise ConfigError(f"unknown task kind {kind!r}; known kinds: {', '.join(self.kinds())}; "
                              f"{ADD_A_KIND}.") from None

    def __contains__(self, kind) -> bool:
        return kind in self.tasks


# The folders of the study this process works for (set by use_config), and the registries
# already discovered, per tuple of folders.
_folders: tuple[Path, ...] = ()
_registries: dict[tuple[Path, ...], Registry] = {}


def module_folders(config: dict | None) -> tuple[Path, ...]:
    """The config's ``task_modules``, as absolute paths (relative ones from the project root)."""
    from ftmatrix.config import resolve_path

    return tuple(resolve_path(p).resolve() for p in (config or {}).get("task_modules") or ())


def use_config(config: dict | None) -> None:
    """Make this process resolve kinds with the study's ``task_modules`` folders too."""
    global _folders
    _folders = module_folders(config)


def registry(config: dict | None = None) -> Registry:
    """The kinds of the package plus those of the study's folders (``config``'s, or else those
    given to ``use_config``). Raises ConfigError for a missing folder, a module that cannot be
    loaded or declares no valid TASK, and a kind declared twice."""
    folders = _folders if config is None else module_folders(config)
    if folders not in _registries:
        _registries[folders] = _discover(folders)
    return _registries[folders]


def get_task(kind: str) -> TaskKind:
    return registry().get(kind)


def kinds() -> list[str]:
    return registry().kinds()


# The package modules besides a kind's own that read and score answers (scoring.score_cell, the
# metrics and their intervals, the timing summary a cell's metrics.json carries).
GRADING_MODULES = ("metrics", "scoring", "bootstrap", "timing")


def grading_code(kind: str, config: dict | None = None) -> str:
    """sha256 of the source that turns a kind's generations into scores: its task module (a study's
    own included) and the package's grading modules. A param of rule score_cell, so a change in
    how answers are read or scored re-scores every cell from its saved generations (seconds a
    cell) instead of leaving scores the code would no longer give. ``config``: the study whose
    ``task_modules`` folders hold its own kinds."""
    from ftmatrix.workflow import source_sha256

    return source_sha256(*GRADING_MODULES, extra=(registry(config).files[kind],))


def grading_libraries() -> dict:
    """{distribution: installed version or None} of the libraries that grade
    (provenance.GRADING_LIBRARIES: math-verify and what it parses with), as the planning Python
    sees them. A param of rule score_cell beside the grading code: upgrading math-verify re-scores
    every cell from its saved generations instead of leaving scores the new version would not
    give (a study run with ``--sdm conda`` pins them in envs/evaluate.yaml, which Snakemake
    tracks itself)."""
    from ftmatrix.provenance import GRADING_LIBRARIES, library_versions

    return library_versions(GRADING_LIBRARIES)


def metric_display(name: str, kind: str | None = None) -> str:
    """How the journal and figures name a metric: the kind's own display name (``kind`` given),
    else the first kind that declares one, else the name with its underscores as spaces."""
    name = str(name)
    tasks = registry().tasks
    if kind in tasks and name in tasks[kind].display_names:
        return tasks[kind].display_names[name]
    for kind_name in sorted(tasks):
        if name in tasks[kind_name].display_names:
            return tasks[kind_name].display_names[name]
    return name.replace("_", " ")


# ------------------------------------------------------------------------------ discovery


def _package_modules() -> Iterable[tuple[str, object]]:
    for info in sorted(pkgutil.iter_modules([str(PACKAGE_DIR)]), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "TASK"):
            yield str(PACKAGE_DIR / f"{info.name}.py"), module


def _load_file(path: Path, where: str):
    # A module name of its own per file (folder hash + stem): two folders may both hold a gsm8k.py.
    digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
    name = f"ftmatrix_task_module_{digest}_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} (listed by {where}): cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)).strip()
        raise ConfigError(f"{path} (listed by {where}): the task module failed to load; fix it.\n{detail}") from exc
    if not hasattr(module, "TASK"):
        del sys.modules[name]
        raise ConfigError(f"{path} (listed by {where}): defines no TASK; a task module ends with "
                          f"TASK = TaskKind(kind=..., ...). Name helper files with a leading '_' to keep them out.")
    return module


def _folder_modules(folders: tuple[Path, ...]) -> Iterable[tuple[str, object]]:
    for i, folder in enumerate(folders):
        where = f"task_modules[{i}]"
        if not folder.is_dir():
            raise ConfigError(f"{where} is {folder}, which is not a folder; give a folder of task modules "
                              f"(relative paths are taken from the project root).")
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                yield str(path), _load_file(path, where)


def _metric_names(task: TaskKind) -> set[str]:
    """The names a kind's ``metrics`` reports (on no rows: each value None); where it cannot say on
    no rows, its correctness name (left unchecked)."""
    try:
        return set(task.metrics([]))
    except Exception:
        return {task.correctness}


def _discover(folders: tuple[Path, ...]) -> Registry:
    tasks: dict[str, TaskKind] = {}
    files: dict[str, str] = {}
    for file, module in [*_package_modules(), *_folder_modules(folders)]:
        task = module.TASK
        if not isinstance(task, TaskKind):
            raise ConfigError(f"{file}: TASK is a {type(task).__name__}, not a TaskKind; build it with "
                              f"ftmatrix.tasks.base.TaskKind(kind=..., ...).")
        if not isinstance(task.kind, str) or not KIND_PATTERN.match(task.kind):
            raise ConfigError(f"{file}: TASK.kind is {task.kind!r}, which is not a safe name: use lower-case "
                              f"letters, digits, '.', '_' and '-', starting with a letter or digit.")
        if task.correctness is not None and task.correctness not in _metric_names(task):
            raise ConfigError(f"{file}: TASK.correctness is {task.correctness!r}, which its metrics do not report "
                              f"(they report {', '.join(sorted(_metric_names(task)))}); name one of them, or "
                              f"leave correctness out where the headline counts right answers itself.")
        if task.kind in files:
            raise ConfigError(f"task kind {task.kind!r} is declared twice: by {files[task.kind]} and by {file}; "
                              f"rename the kind in one of them (kinds must be unique).")
        tasks[task.kind] = task
        files[task.kind] = file
    return Registry(tasks=tasks, files=files, folders=folders)
