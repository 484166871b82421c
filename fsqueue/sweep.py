"""Sweeps: one job description that stands for many iterations. Pure.

A job with a `sweep` field is a template. Its iterations are made one at a time, when the manager
needs more work in its queue, so a sweep of 100,000 iterations costs one record until it runs. Each
iteration gets the variables of its position: `${it}` (the range value, the scalar value, or the line
of a parameter file; the position for named parameters), `${index}` (the 0-based position, always)
and any named parameters (`${alpha}`), substituted in exec, args, script, env values, wd, stdin,
stdout, stderr and after. Only those names are replaced: `${HOME}` in a script stays for bash.
docs/job-format.md, "Sweeps", is the public description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ITERATIONS = 1_000_000
MAX_PARAMETERS = 32
ITERATION_VARIABLES = ("it", "index")
KINDS = ("range", "values", "product", "file")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Fields whose strings are substituted; name is not (iterations are named NAME:IT).
SUBSTITUTED = ("exec", "args", "script", "env", "wd", "stdin", "stdout", "stderr", "after")

Scalar = str | int | float


@dataclass(frozen=True)
class Sweep:
    """The iterations of one sweep: a range, a list of values, or a product of named lists."""

    start: int = 0
    step: int = 1
    count: int = 0
    values: tuple[Any, ...] | None = None  # scalars, or mappings of named scalars
    product: tuple[tuple[str, tuple[Scalar, ...]], ...] | None = None

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Sweep:
        """From a validated `sweep` field whose parameter file, if any, was read into `values`."""
        if "range" in document:
            bounds = document["range"]
            start, stop, step = int(bounds.get("start", 0)), int(bounds["stop"]), int(bounds.get("step", 1))
            return cls(start=start, step=step, count=len(range(start, stop, step)))
        if "product" in document:
            axes = tuple((name, tuple(values)) for name, values in document["product"].items())
            return cls(count=math.prod(len(values) for _, values in axes), product=axes)
        if "values" in document:
            return cls(count=len(document["values"]), values=tuple(document["values"]))
        raise ValueError("a sweep's parameter file must be read into values before it is parsed")

    def __len__(self) -> int:
        return self.count

    def variables(self, index: int) -> dict[str, str]:
        """The substitution variables of iteration `index` (0-based)."""
        if not 0 <= index < self.count:
            raise IndexError(f"iteration {index} of a sweep of {self.count}")
        variables = {"index": str(index)}
        if self.product is not None:
            variables["it"] = str(index)
            rest = index
            for name, values in reversed(self.product):  # the last axis varies fastest, as in itertools.product
                rest, position = divmod(rest, len(values))
                variables[name] = _text(values[position])
        elif self.values is not None:
            value = self.values[index]
            if isinstance(value, Mapping):
                variables["it"] = str(index)
                variables.update((name, _text(item)) for name, item in value.items())
            else:
                variables["it"] = _text(value)
        else:
            variables["it"] = str(self.start + index * self.step)
        return variables


def problems(sweep: Mapping[str, Any]) -> list[str]:
    """Why a schema-valid `sweep` field cannot be used, as 'sweep...: why' strings; empty when fine."""
    kinds = [kind for kind in KINDS if kind in sweep]
    if len(kinds) != 1:
        return [f"sweep: needs exactly one of {', '.join(KINDS)}"]
    if "header" in sweep and kinds != ["file"]:
        return ["sweep.header: goes with file"]
    kind = kinds[0]
    if kind == "range":
        bounds = sweep["range"]
        if bounds.get("step", 1) == 0:
            return ["sweep.range.step: must not be 0"]
        count = len(range(bounds.get("start", 0), bounds["stop"], bounds.get("step", 1)))
        return _count_problems("sweep.range", count)
    if kind == "values":
        return _values_problems(sweep["values"])
    if kind == "product":
        found = [f"sweep.product.{name}: {why}" for name in sweep["product"] if (why := _name_problem(name))]
        found += [f"sweep.product.{name}[{i}]: contains a NUL byte" for name, values in sweep["product"].items()
                  for i, value in enumerate(values) if "\x00" in _text(value)]
        if len(sweep["product"]) > MAX_PARAMETERS:
            found.append(f"sweep.product: {len(sweep['product'])} parameters; at most {MAX_PARAMETERS}")
        count = math.prod(len(values) for values in sweep["product"].values())
        return found or _count_problems("sweep.product", count)
    return []


def _values_problems(values: Sequence[Any]) -> list[str]:
    named = [isinstance(value, Mapping) for value in values]
    if any(named) and not all(named):
        return ["sweep.values: all scalars or all objects of named parameters, not a mix"]
    found: list[str] = []
    for index, value in enumerate(values):
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for name, item in items:
            where = f"sweep.values[{index}]" + (f".{name}" if name is not None else "")
            why = _name_problem(name) if name is not None else None
            if why:
                found.append(f"{where}: {why}")
            elif "\x00" in _text(item):
                found.append(f"{where}: contains a NUL byte")
            if len(found) > 5:
                return found
    return found


def _name_problem(name: str) -> str | None:
    if not _NAME_RE.fullmatch(name):
        return "a parameter name is letters, digits and _, not starting with a digit"
    if name in ITERATION_VARIABLES:
        return f"${{{name}}} is set by fsqueue; choose another name"
    return None


def _count_problems(where: str, count: int) -> list[str]:
    if count < 1:
        return [f"{where}: has no iterations"]
    if count > MAX_ITERATIONS:
        return [f"{where}: has {count} iterations; at most {MAX_ITERATIONS} per sweep"]
    return []


def values_from_lines(text: str, header: bool) -> list[Any]:
    """A parameter file's iterations: one per line, blank lines and # comments skipped.

    Without a header each line is one value (`${it}`); with one, the first line names the columns
    (separated by whitespace) and each line gives them values.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not header:
        return lines
    if not lines:
        return []
    names = lines[0].split()
    for name in names:
        why = _name_problem(name)
        if why:
            raise ValueError(f"header column {name!r}: {why}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split()
        if len(cells) != len(names):
            raise ValueError(f"line {number} has {len(cells)} columns; the header names {len(names)}")
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def substitute(text: str, variables: Mapping[str, str]) -> str:
    if "${" not in text:
        return text
    return _VARIABLE_RE.sub(lambda match: variables.get(match.group(1), match.group(0)), text)


def iteration_document(document: Mapping[str, Any], job_id: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """The job document of one iteration: the template's fields substituted, no sweep, its own id and name."""
    iteration: dict[str, Any] = {"id": job_id}
    for field, value in document.items():
        if field in ("id", "sweep"):
            continue
        if field == "name":
            value = f"{value}:{variables['it']}"
        elif field in SUBSTITUTED:
            value = _substitute_any(value, variables)
        iteration[field] = value
    return iteration


def _substitute_any(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute(value, variables)
    if isinstance(value, list):
        return [_substitute_any(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: _substitute_any(item, variables) for key, item in value.items()}
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):  # as JSON writes it, not Python's True
        return "true" if value else "false"
    return str(value)
