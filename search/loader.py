"""The spec's YAML loader: PyYAML's safe loader, made strict enough for the edge.

It refuses, naming the file and the line: bytes that are not UTF-8 (UTF-16 and UTF-32 only with
their byte-order mark, as YAML allows), NUL bytes, a file over MAX_BYTES, a key given twice in one
mapping (PyYAML would keep the last silently), a key that is not text, nesting deeper than
MAX_DEPTH (PyYAML's composer recurses: a deep file would end in RecursionError), more aliases than
ALIAS_BUDGET (a "billion laughs" alias bomb expands exponentially once anything copies it), and
values no spec field takes: ``!!binary`` bytes, ``!!set``, ``!!omap``, ``!!pairs``, and dates
(``!!timestamp``, or an unquoted ``2024-01-01``, which YAML 1.1 reads as a date), and the two
integers YAML 1.1 reads unlike YAML 1.2 and unlike a reader: ``010`` (octal 8) and ``1:30``
(base 60, 90). It also reads
YAML 1.2 floats without a dot (``3e-5``, ``1e9``, ``.5e3``), which YAML 1.1 leaves as strings.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ALIAS_BUDGET = 20  # aliases (*name) per file; a spec needs none, a merge key or two at most
MAX_DEPTH = 32  # nested mappings and lists; a spec needs 5 (methods.lora.rank: [..])
MAX_BYTES = 2**20  # a spec is a page or two; a grid of 10,000 values is about 100 KiB

# YAML 1.2 core schema floats that YAML 1.1 leaves as strings (no dot, or no exponent sign)
_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
_REFUSED_TAGS = {"binary": "bytes (!!binary)", "set": "a set (!!set)", "omap": "an ordered map (!!omap)",
                 "pairs": "pairs (!!pairs)", "timestamp": "a date or time"}
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xfe\xff", "utf-16-be"),
         (b"\xff\xfe", "utf-16-le"))


class YamlError(ValueError):
    """One line: FILE:LINE: what is wrong."""


class _Loader(yaml.SafeLoader):
    aliases = 0
    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > ALIAS_BUDGET:
                mark = self.peek_event().start_mark
                raise YamlError(f"{self.name}:{mark.line + 1}: more than {ALIAS_BUDGET} aliases (*name); "
                                f"a spec needs none, got alias number {self.aliases}")
        if self.check_event(yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlError(f"{self.name}:{mark.line + 1}: nested more than {MAX_DEPTH} levels deep; "
                                f"a spec needs 5, got level {self.depth}")
        return super().compose_node(parent, index)

    def compose_sequence_node(self, anchor):
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor):
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: flatten_mapping merges it below
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise YamlError(f"{self.name}:{line}: duplicate key {key!r} (first given at line {seen[key]}); "
                                    f"a key may appear once per mapping, got it twice")
            except TypeError:  # an unhashable key (a list as a key): SafeLoader names it below
                break
            if not isinstance(key, str):
                raise YamlError(f"{self.name}:{line}: a key must be text (quote it), got {key!r} "
                                f"({type(key).__name__})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _refuse(what: str):
    def construct(loader: _Loader, node):
        raise YamlError(f"{loader.name}:{node.start_mark.line + 1}: a spec value is text, a number, a boolean, "
                        f"null, a list or a mapping; quote it to make it text, got {what} {_shown(node)}")
    return construct


def _shown(node) -> str:
    value = node.value if isinstance(node.value, str) else "..."
    return repr(value if len(value) <= 40 else value[:37] + "...")


_OCTAL_11 = re.compile(r"^[-+]?0[0-7_]+$")  # YAML 1.1 octal; YAML 1.2 reads the same digits as decimal


def _int(loader: _Loader, node):
    """YAML 1.1 reads ``010`` as octal 8 and ``1:30`` (base 60) as 90, where a reader (and
    YAML 1.2) sees 10 and text: refuse both rather than guess; other integers as PyYAML reads them."""
    line = node.start_mark.line + 1
    if ":" in node.value:
        raise YamlError(f"{loader.name}:{line}: {node.value} is a base-60 number in YAML 1.1 "
                        f"({yaml.SafeLoader.construct_yaml_int(loader, node)}); quote it for text, got {node.value!r}")
    if _OCTAL_11.match(node.value) and node.value.lstrip("+-").replace("_", "").strip("0"):  # 0 and 00 are 0
        raise YamlError(f"{loader.name}:{line}: {node.value} is octal in YAML 1.1 "
                        f"({yaml.SafeLoader.construct_yaml_int(loader, node)}) and decimal in YAML 1.2; "
                        f"write it without the leading zero, got {node.value!r}")
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _float(loader: _Loader, node):
    if ":" in str(node.value):
        raise YamlError(f"{loader.name}:{node.start_mark.line + 1}: {node.value} is a base-60 number in YAML 1.1 "
                        f"({yaml.SafeLoader.construct_yaml_float(loader, node)}); quote it for text, "
                        f"got {node.value!r}")
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)
for _tag, _what in _REFUSED_TAGS.items():
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse(_what))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def load_yaml(path: Path) -> Any:
    """Parse a spec file, or raise YamlError with the file and the line."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlError(f"{path}: a spec is at most {MAX_BYTES:,} bytes (1 MiB), got {path.stat().st_size:,} bytes")
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
    for bom, encoding in _BOMS:  # YAML allows UTF-16 and UTF-32 when the byte-order mark says so
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                line = data[: e.start].count(b"\n") + 1  # a guess: newlines are not one byte here
                raise YamlError(f"{path}:{line}: the byte-order mark says {encoding.upper()}, and the text "
                                f"is not, got bytes {data[e.start:e.start + 2].hex()}") from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: a spec is text; it must not hold NUL bytes, got a NUL byte")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: a spec must be UTF-8 text, got byte {data[e.start]:#04x}") from None
