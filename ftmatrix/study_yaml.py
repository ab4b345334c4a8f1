"""Study files read strictly: YAML that parses but means something else is refused.

PyYAML follows YAML 1.1, where several plain scalars are not what a reader of the file
would take them for, and a mapping may repeat a key (the later block silently wins). A
study file is small and hand-written, so each of these is refused with the file, the line
and the fix:

* a key written twice in one mapping;
* ``010`` (an octal 8 in YAML 1.1, a decimal 10 in YAML 1.2) and any other integer with a
  leading zero, and sexagesimal numbers (``1:30`` is 90);
* ``yes``/``no``/``on``/``off`` (booleans in YAML 1.1, strings in YAML 1.2): write
  ``true``/``false``, or quote the word;
* anchors and aliases (``&a`` / ``*a``): nothing in a study needs them, and nested aliases
  make a few hundred bytes expand to gigabytes when the config is copied or printed.

Snakemake reads the same files with its own loader; the workflow reads them again with this
one before anything looks at the config (rules/common.smk), so a study is refused before it
is validated, copied or printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ftmatrix.errors import ConfigError

_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")
_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n"}


def _where(path, node) -> str:
    return f"{path}, line {node.start_mark.line + 1}"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, YAML 1.1 number and boolean surprises, and aliases."""

    source = "study file"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"{self.source}, line {event.start_mark.line + 1}: the alias *{event.anchor} "
                              f"repeats an anchored block; study files take no anchors or aliases. Write the "
                              f"values out where they are needed.")
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise ConfigError(f"{self.source}, line {event.start_mark.line + 1}: the anchor &{anchor}: study "
                              f"files take no anchors or aliases. Write the values out where they are needed.")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue
            if key in seen:
                raise ConfigError(f"{_where(self.source, key_node)}: the key {key!r} is written twice in the same "
                                  f"block (first on line {seen[key] + 1}); YAML would keep only the second. "
                                  f"Merge the two into one.")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = str(node.value)
        if node.style is None and (_LEADING_ZERO.fullmatch(text) or _SEXAGESIMAL.fullmatch(text)):
            kind = "sexagesimal (base 60)" if ":" in text else "octal"
            raise ConfigError(f"{_where(self.source, node)}: {text} is read as an {kind} number by YAML 1.1 "
                              f"({super().construct_yaml_int(node)}), which is rarely what was meant. Write the "
                              f"number without leading zeros, or quote it if it is a name.")
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        text = str(node.value)
        if node.style is None and _SEXAGESIMAL.fullmatch(text):
            raise ConfigError(f"{_where(self.source, node)}: {text} is read as a sexagesimal (base 60) number by "
                              f"YAML 1.1. Write the number plainly, or quote it if it is a name.")
        return super().construct_yaml_float(node)

    def construct_yaml_bool(self, node):
        text = str(node.value)
        if node.style is None and text.lower() in _YAML11_WORDS:
            meaning = super().construct_yaml_bool(node)
            raise ConfigError(f"{_where(self.source, node)}: {text} is a boolean ({str(meaning).lower()}) in YAML 1.1 "
                              f"and a string in YAML 1.2. Write {str(meaning).lower()}, or quote it ('{text}') if "
                              f"you mean the word.")
        return super().construct_yaml_bool(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
StrictLoader.add_constructor("tag:yaml.org,2002:bool", StrictLoader.construct_yaml_bool)


def load_study_yaml(path: str | Path):
    """The document in ``path``, read strictly; ConfigError names the file, the line and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the study file as UTF-8.") from None
    loader = StrictLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax at the line shown.") from None
    finally:
        loader.dispose()
