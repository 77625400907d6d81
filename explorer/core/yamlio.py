"""YAML as explorer reads and writes it: line numbers for messages, duplicate keys refused,
5e-4 read as a number, lists of scalars written inline ([0, 3, 7]).

Study and spec files are small and hand-written, so reading them is bounded: `read_text`
takes only a regular file of at most MAX_FILE_BYTES (a FIFO would block for ever, a link
to /dev/zero read until memory ran out), and `load` refuses aliases (`*name`: a 1 KB
"billion laughs" file expands to gigabytes) and nesting deeper than MAX_DEPTH (libyaml's
composer recurses in C and crashes the process at a few ten thousand levels).
libyaml's loader is used when PyYAML has it (about 10x faster than the pure-Python one).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from explorer.core.errors import UserError

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50
_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES; one-line UserError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}; check the path") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device"
        raise UserError(f"{what} {path} is {kind}, not a regular file; give the path of a text file")
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{what} {path} is larger than the {MAX_FILE_BYTES:,}-byte limit for {what}s; "
                        "is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                        "save the file as UTF-8") from None


def check_shape(text: str) -> None:
    """UserError for an alias or nesting deeper than MAX_DEPTH, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=_FAST):
        if isinstance(event, yaml.AliasEvent):
            raise UserError(f"line {event.start_mark.line + 1}: YAML alias *{event.anchor} is not allowed "
                            "here; write the value out in full")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                                "deep; is it the right file?")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


class LineLoader(_FAST):
    """A SafeLoader whose mappings remember the line of each key and refuse a key given twice."""


class Lines(dict):
    """A dict that also knows the 1-based line of each of its keys."""

    lines: dict[str, int]


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> Lines:
    loader.flatten_mapping(node)
    out = Lines()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise UserError(f"line {key_node.start_mark.line + 1}: keys must be text, got {key!r}")
        if key in out:
            raise UserError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice; keep one of them")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads 5e-4 as text; accept the spelling people write for weight decay.
LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load(text: str) -> Any:
    """Parse YAML with LineLoader (mappings are `Lines`; no aliases, bounded depth);
    yaml.YAMLError or UserError."""
    check_shape(text)
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass


def load_json(text: str) -> Any:
    """Parse JSON refusing duplicate keys; json.JSONDecodeError or UserError (also for deep nesting)."""
    try:
        return json.loads(text, object_pairs_hook=unique_pairs)
    except RecursionError:
        raise UserError("nested too deeply; is it the right file?") from None


def plain_dicts(v: Any) -> Any:
    """LineLoader's line-remembering dicts as plain dicts (SafeDumper writes only plain ones)."""
    if isinstance(v, dict):
        return {k: plain_dicts(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain_dicts(x) for x in v]
    return v


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook refusing a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UserError(f"key {key!r} appears twice; keep one of them")
        out[key] = value
    return out


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of scalars ([0, 3, 7])."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump(doc: dict[str, Any], fmt: str) -> str:
    """YAML (keys in order) or indented JSON text."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
