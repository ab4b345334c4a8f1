"""The task registry: one module per task kind (lm-evaluation-harness style).

A task kind knows how to read its sources into hub-schema rows, turn a row into the
example format, extract an answer from generated text, and score it. Adding a task is
one module here plus one entry in the config's ``tasks`` list.
"""

from __future__ import annotations

import importlib

from ftmatrix.tasks.base import TaskKind

KINDS = ("arc", "openmath", "squad_v2")


def get_task(kind: str) -> TaskKind:
    if kind not in KINDS:
        raise KeyError(f"unknown task kind {kind!r}; known kinds: {', '.join(KINDS)}")
    module = importlib.import_module(f"ftmatrix.tasks.{kind}")
    return module.TASK
