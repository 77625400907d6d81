"""YAML as explorer reads and writes it: line numbers for messages, duplicate keys refused,
5e-4 read as a number, lists of scalars written inline ([0, 3, 7])."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from explorer.errors import UserError


class LineLoader(yaml.SafeLoader):
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
            raise UserError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
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
    """Parse YAML with LineLoader (mappings are `Lines`); yaml.YAMLError or UserError."""
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass


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
            raise UserError(f"key {key!r} appears twice")
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
