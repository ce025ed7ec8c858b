"""Dependencies flow one way: entry points -> program -> components | config -> renderers
-> agent. This walks every import of the product's modules and names the one that
reaches up (or sideways between components and config), so the shape cannot erode.

The layers, highest first (docs/architecture.md, "Layers"; the agent's standard-library
rule is in test_agent_package.py):

    entry      __main__, gin_deploy.__main__, gin_deploy.automation, gin_deploy.docs,
               gin_deploy.stack_locks, gin_deploy.status
    program    gin_deploy.program        the only place that maps stack config to args
    components components                take their own typed args
    config     gin_deploy.config         reads and validates stack config
    render     gin_deploy.render         pure functions of plain values
    agent      gin_deploy.agent          standard library only; ships to hosts

components and config sit side by side: neither imports the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# name prefix -> (rank, layer); a module may import only its own layer or lower ranks.
LAYERS: list[tuple[str, int, str]] = [
    ("gin_deploy.agent", 0, "agent"),
    ("gin_deploy.render", 1, "render"),
    ("gin_deploy.config", 2, "config"),
    ("components", 2, "components"),
    ("gin_deploy.program", 3, "program"),
    ("gin_deploy.automation", 4, "entry"),
    ("gin_deploy.stack_locks", 4, "entry"),
    ("gin_deploy.status", 4, "entry"),
    ("gin_deploy.docs", 4, "entry"),
    ("gin_deploy.__main__", 4, "entry"),
    ("gin_deploy", 4, "entry"),          # the package itself (its __init__)
    ("__main__", 4, "entry"),
]
PRODUCT_DIRS = ("gin_deploy", "components")


def layer_of(module: str) -> tuple[int, str] | None:
    for prefix, rank, name in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank, name
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> list[Path]:
    files = [ROOT / "__main__.py"]
    for directory in PRODUCT_DIRS:
        files += sorted((ROOT / directory).rglob("*.py"))
    return files


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` may import a submodule: judge pkg.sub when it is one.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return found


def test_every_product_module_has_a_layer() -> None:
    missing = [module_name(p) for p in product_modules() if layer_of(module_name(p)) is None]
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


def test_no_module_imports_from_a_layer_above_or_beside_it() -> None:
    wrong = []
    for path in product_modules():
        here = module_name(path)
        rank, layer = layer_of(here) or (99, "?")
        for line, target in sorted(set(imports_of(path))):
            there = layer_of(target)
            if there is None:
                continue
            other_rank, other_layer = there
            sideways = {layer, other_layer} == {"components", "config"}
            if other_rank > rank or sideways:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target} "
                             f"({other_layer})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_outgrows_a_reader(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 600, f"{path.relative_to(ROOT)} has {lines} lines: cut it along its seams"
