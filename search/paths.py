"""Paths in a spec, checked for what they must be, without tracebacks: a ``~user`` that names no
user, a name longer than the file system allows (ENAMETOOLONG), a file where a directory must be."""
from __future__ import annotations

import os
import stat
from pathlib import Path

NAME_MAX = 255  # bytes per path component on Linux/macOS file systems
PATH_MAX = 4096


def short(value: object, limit: int = 80) -> str:
    """repr of a value, cut to fit on one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}... ({len(text)} characters)"


def checked_path(field: str, value: str, *, shown: str | None = None) -> Path:
    """``value`` as a Path with ``~`` expanded, or ValueError("FIELD: rule, got VALUE")."""
    head = f"{field}: " if field else ""
    got = short(shown if shown is not None else value)
    if not value:
        raise ValueError(f"{head}must be a path, got ''")
    if "\x00" in value:
        raise ValueError(f"{head}a path must not hold NUL characters, got {got}")
    if len(os.fsencode(value)) > PATH_MAX:
        raise ValueError(f"{head}the path is longer than the system's limit of {PATH_MAX} bytes, got {got}")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "Could not determine home directory"
        user = value[1:].split("/", 1)[0]
        raise ValueError(f"{head}~{user} names no user of this machine, got {got}") from None
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ValueError(f"{head}a path component is longer than the system's limit of {NAME_MAX} bytes, "
                             f"got {got}")
    return path


def probe(path: Path, shown: str | None = None) -> str | None:
    """What is at ``path``: "dir", "file", another kind's name, or None if nothing is there."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ValueError(f"cannot be inspected ({e.strerror}), got {short(shown or str(path))}") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "special file"


def writable_dir(field: str, value: str) -> Path:
    """An output directory, absolute: one that exists, or one that can be made, and that a file
    can be written in. Checked by making (and removing at once) a directory where the first file
    would go, so a read-only or pseudo file system (/proc, /sys) is one line before any work."""
    import tempfile

    head, got = f"{field}: " if field else "", short(value)
    path = checked_path(field, value).absolute()
    kind = probe(path, value)
    if kind not in (None, "dir"):
        raise ValueError(f"{head}must be a directory, got a {kind} {got}")
    there = path
    while kind is None:  # the nearest part of it that exists
        there = there.parent
        kind = probe(there, value)
    if kind != "dir":
        raise ValueError(f"{head}{there} is a {kind}, not a directory, got {got}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".peftsearch-check-", dir=there))
    except OSError as e:
        raise ValueError(f"{head}cannot write in {there} ({e.strerror or type(e).__name__}), got {got}") from None
    return path.resolve()
