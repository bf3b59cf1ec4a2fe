"""The spec's YAML loader: PyYAML's safe loader, made strict enough for the edge.

It refuses, naming the file and the line: bytes that are not UTF-8, NUL bytes, a key given twice
in one mapping (PyYAML would keep the last silently), and more aliases than ALIAS_BUDGET (a
"billion laughs" alias bomb expands exponentially once anything copies it). It also reads
YAML 1.2 floats without a dot (``3e-5``, ``1e9``), which YAML 1.1 leaves as strings.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ALIAS_BUDGET = 20  # aliases (*name) per file; a spec needs none, a merge key or two at most

_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class YamlError(ValueError):
    """One line: FILE:LINE: what is wrong."""


class _Loader(yaml.SafeLoader):
    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > ALIAS_BUDGET:
                mark = self.peek_event().start_mark
                raise YamlError(f"{self.name}:{mark.line + 1}: more than {ALIAS_BUDGET} aliases (*name); "
                                f"a spec needs none, got alias number {self.aliases}")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise YamlError(f"{self.name}:{line}: duplicate key {key!r} (first given at line {seen[key]}); "
                                    f"a key may appear once per mapping, got it twice")
            except TypeError:  # an unhashable key (a list as a key): SafeLoader names it below
                break
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789"))


def load_yaml(path: Path) -> Any:
    """Parse a spec file, or raise YamlError with the file and the line."""
    data = path.read_bytes()
    text = _decode(path, data)
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        loader.name = str(path)
        return loader.get_single_data()
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        raise YamlError(f"{path}:{line}: a spec must not hold control characters, got {chr(e.character)!r}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise YamlError(f"{path}{where}: not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: a spec is text; it must not hold NUL bytes, got a NUL byte")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: a spec must be UTF-8 text, got byte {data[e.start]:#04x}") from None
