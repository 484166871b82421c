"""The import graph of STYLE.md, read from the source with `ast`: imports point downward only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fsqueue"
MODULES = {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}

# Which fsqueue modules each module may import. A new module or a new edge is a decision: add it here.
ALLOWED = {
    "errors": set(),
    "model": {"errors", "sweep"},
    "sweep": set(),
    "sweep_run": {"model"},
    "resources": set(),
    "scheduler": {"model"},
    "deps": set(),
    "spool": {"errors"},
    "journal": {"errors", "spool"},
    "lease": {"errors", "spool"},
    "intake": {"model", "spool", "errors"},
    "launcher": {"model"},
    "watch": set(),
    "recovery": {"model", "journal", "spool", "errors"},
    "manager": {"model", "scheduler", "deps", "intake", "joblog", "journal", "launcher", "recovery", "resources",
                "spool", "sweep_run", "errors"},
    "serve": {"manager", "spool", "watch", "errors", "lease"},
    "progress": {"model"},
    "joblog": {"model"},
    "report": {"client", "joblog", "model", "spool"},
    "report_html": set(),
    "watch_view": {"client", "joblog", "spool"},
    "client": {"model", "rerun", "spool", "errors"},
    "rerun": set(),
    "mounts": set(),
    "doctor": {"mounts", "spool"},
    "qcg": {"model", "errors", "sweep"},  # pure translation of QCG-PilotJob request files
    "cli": set(MODULES) - {"cli", "__main__"},
    "__init__": {"client"},
    "__main__": {"cli"},
}
# Standard modules that touch files, processes, the clock, randomness or logging.
IO_MODULES = {"os", "sys", "io", "pathlib", "shutil", "subprocess", "socket", "signal", "selectors", "time",
              "random", "secrets", "tempfile", "logging", "threading", "fcntl", "glob", "filelock", "watchdog",
              "importlib"}
PURE = {"mounts": set(), "scheduler": set(), "resources": set(), "deps": set(), "sweep": set(), "sweep_run": set(), "qcg": set(), "rerun": set(), "model": {"importlib.resources"}}  # module -> allowed exception


def imports(tree: ast.Module) -> set[str]:
    """Every module name imported, as written ('fsqueue.spool', 'os'); `from fsqueue import x` gives 'fsqueue.x'."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "fsqueue":
            names |= {f"fsqueue.{alias.name}" if alias.name in MODULES else "fsqueue.__init__" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_every_module_has_a_row() -> None:
    assert set(MODULES) == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_downward(module: str) -> None:
    used = {name.split(".")[1] for name in imports(MODULES[module]) if name.startswith("fsqueue.")}
    assert used <= ALLOWED.get(module, set()), f"{module} imports {sorted(used - ALLOWED.get(module, set()))}"


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_no_io(module: str) -> None:
    used = {name for name in imports(MODULES[module]) if name.split(".")[0] in IO_MODULES} - PURE[module]
    assert not used, f"{module} is pure but imports {sorted(used)}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"cli"}))
def test_only_cli_reads_the_environment(module: str) -> None:
    for node in ast.walk(MODULES[module]):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            assert node.attr not in {"environ", "getenv"}, f"{module}:{node.lineno} reads the environment"
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            assert not {a.name for a in node.names} & {"environ", "getenv"}, f"{module}:{node.lineno}"
