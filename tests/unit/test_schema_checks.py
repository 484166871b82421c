"""The fast schema check (fastjsonschema) and the diagnosing one (jsonschema) must give the same verdict.

model.job_problems trusts the fast check when it says valid, so a job it passed and jsonschema
refused would run unchecked. Every field the schema names is set, one at a time, to each value of a
palette of right and wrong types and edge values, and both validators judge the result.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from fsqueue import model

PALETTE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 1.0, 1.5, 10**7, 2**63, "", "x", "a/b", ".x", "x\n", "1:00", "01:02:03",
    "2-00:00:00", "FSQ_X", "0123456789abcdef", "0123456789abcdef\n", "x" * 5000, [], ["x"], [1], [None], ["a", "a"],
    {}, {"min": 1}, {"min": 0}, {"min": 2, "max": 1}, {"min": 1, "max": 4}, {"max": 2}, {"A": "1"}, {"A": 1},
    {"1A": "x"}, {"x": {"y": 1}}, {"name": "a"}, {"values": [1, 2]}, {"values": []},
]
BASES: list[dict[str, Any]] = [{"exec": "a"}, {"script": "echo hi"}, {}]


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        document, _, pointer = schema["$ref"].partition("#")
        assert document in ("", root["$id"]) and pointer.startswith("/"), schema["$ref"]
        target: Any = root
        for part in pointer[1:].split("/"):
            target = target[part]
        schema = target
    return schema


def _paths(schema: dict[str, Any], root: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every property path the schema names, through nested objects and the items of arrays of objects."""
    schema = _resolve(schema, root)
    for name, sub in schema.get("properties", {}).items():
        path = (*prefix, name)
        yield path
        sub = _resolve(sub, root)
        yield from _paths(sub, root, path)
        items = sub.get("items")
        if isinstance(items, dict):
            yield from _paths(items, root, (*path, "0"))


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    node: Any = doc
    for part, following in itertools.pairwise(path):
        if part == "0":
            continue
        child = node.get(part)
        if following == "0":
            child = node[part] = [{}] if not isinstance(child, list) else child
            node = child[0]
        else:
            child = node[part] = child if isinstance(child, dict) else {}
            node = child
    node[path[-1]] = value
    return doc


def _documents() -> Iterator[dict[str, Any]]:
    root = model.job_schema()
    paths = list(_paths(root, root))
    assert len(paths) > 30, paths  # the walk found the schema's fields
    for base in BASES:
        yield base
        for path in paths:
            for value in PALETTE:
                yield _with(base, path, value)


def test_both_validators_give_the_same_verdict_on_every_field_and_value() -> None:
    fast = model._is_valid()
    full = jsonschema.Draft202012Validator(model.job_schema())
    judged = valid = 0
    disagreements = []
    for doc in _documents():
        judged += 1
        verdict = full.is_valid(doc)
        valid += verdict
        if fast(doc) != verdict:
            disagreements.append((doc, verdict))
    assert not disagreements[:5], f"{len(disagreements)} of {judged} documents judged differently"
    assert 0.05 < valid / judged < 0.95  # the palette makes both kinds


# Keywords both validators implement alike. fastjsonschema compiles this 2020-12 schema with its
# draft-07 rules and passes over a keyword it does not know (unevaluatedProperties,
# dependentRequired, ...), so such a keyword in the schema would let the fast check accept more.
KNOWN_KEYWORDS = {
    "$comment", "$defs", "$id", "$ref", "$schema", "additionalProperties", "const", "description", "enum",
    "exclusiveMinimum", "items", "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength",
    "minProperties", "minimum", "pattern", "properties", "required", "title", "type",
}
NAMED_MAPS = ("properties", "$defs")  # their keys are names, not keywords


def _keywords(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            for sub in value.values() if key in NAMED_MAPS else [value]:
                yield from _keywords(sub)
    elif isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)


def test_the_schema_uses_only_keywords_both_validators_implement() -> None:
    used = set(_keywords(model.job_schema()))
    assert used <= KNOWN_KEYWORDS, sorted(used - KNOWN_KEYWORDS)
    assert {"properties", "required", "pattern", "$ref"} <= used  # the walk reached the schema's body


@pytest.mark.parametrize("job", [{"exec": "a", "resources": {"cores": 0}}, {"exec": 1}, {"exec": "a", "cpus": 2}])
def test_a_job_the_fast_check_refuses_gets_jsonschemas_message(job: dict[str, Any]) -> None:
    assert not model._is_valid()(job)
    assert model.job_problems(job) and all(":" in problem for problem in model.job_problems(job))
