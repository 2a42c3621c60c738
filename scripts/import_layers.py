"""Check that tumor_ai's imports run one way: app -> publish -> core -> model, with no circle.

    python scripts/import_layers.py          # prints each wing's imports; exits 1 on an upward import or a circle

Every import counts, at module level or inside a function. ``tumor_ai`` itself (the disclaimer's
words) sits below every wing; ``tumor_ai.cli`` above them all; ``training`` (``tumor_ai.training`` in
the wheel) may import any wing and no wing may import it. ``tumor_ai._moved`` (the import hook that
answers the old flat paths for one release) is no wing and is skipped; importing an old path from inside
``tumor_ai`` is a problem. A flat module is placed by ``FLAT`` (the wing it moved to), so the check reads
the layout before the move too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WINGS = {"tumor_ai": -1, "model": 0, "core": 1, "publish": 2, "app": 3, "cli": 4}
FLAT = {  # the flat layout's modules, by the wing each moved to
    **dict.fromkeys(["models", "architectures", "sources", "labels"], "model"),
    **dict.fromkeys(
        ["imaging", "preprocessing", "inference", "cam", "calibration", "conformal", "mri_check", "erase", "batch"]
        + ["explain", "safe_text", "microbatch", "precision"],
        "core",
    ),
    **dict.fromkeys(["card", "hub", "space"], "publish"),
    **dict.fromkeys(["serve", "ui", "handlers", "chat", "assistant", "tools", "tool_endpoints", "workspace", "predict"], "app"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SKIPPED = {"tumor_ai._moved"}


def old_paths() -> set[str]:
    """The flat paths the import hook answers (none before the move)."""
    path = ROOT / "tumor_ai" / "_moved.py"
    if not path.exists():
        return set()
    sys.path.insert(0, str(ROOT))
    from tumor_ai import _moved

    return set(_moved.MOVED) | {_moved.MODELS}


def wing(module: str) -> str | None:
    """The wing of a ``tumor_ai`` module, ``training`` for the training code, ``None`` for anything else."""
    parts = module.split(".")
    if parts[0] == "training" or parts[:2] == ["tumor_ai", "training"]:
        return "training"
    if parts[0] != "tumor_ai":
        return None
    if len(parts) == 1:
        return "tumor_ai"
    return parts[1] if parts[1] in WINGS else FLAT.get(parts[1])


def imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """The modules ``module`` imports (``from a import b`` counts ``a.b`` when that is a module of ours)."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """Each non-shim ``tumor_ai`` module's imports of other ``tumor_ai`` modules."""
    paths = sorted((ROOT / "tumor_ai").rglob("*.py"))
    modules = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        modules[module_name(path)] = (tree, path.name == "__init__.py")
    old = old_paths()
    edges: dict[str, set[str]] = {}
    for module, (tree, is_package) in modules.items():
        if module in SKIPPED:
            continue
        targets = imports(tree, module, is_package)
        edges[module] = {name for name in targets if name != module and name not in SKIPPED and name not in old}
        edges[module] = {name for name in edges[module] if name in modules or wing(name) == "training"}
        edges[module] |= {f"{name} (deprecated path)" for name in targets & old}
    return edges


def problems(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if target.endswith("(deprecated path)"):
                found.append(f"{module} imports {target}")
                continue
            source_wing, target_wing = wing(module), wing(target)
            if target_wing == "training" and source_wing != "training":
                found.append(f"{module} ({source_wing}) imports the training code {target}")
            elif source_wing in WINGS and target_wing in WINGS and WINGS[target_wing] > WINGS[source_wing]:
                found.append(f"{module} ({source_wing}) imports {target} ({target_wing}): upward")
    return found + [f"circle: {' -> '.join(cycle)}" for cycle in circles(edges)]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in edges:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def main() -> int:
    edges = graph()
    between = defaultdict(int)
    for module, targets in edges.items():
        for target in targets:
            if not target.endswith("(deprecated path)"):
                between[(wing(module), wing(target))] += 1
    for (source, target), count in sorted(between.items(), key=lambda item: (WINGS.get(item[0][0], 9), WINGS.get(item[0][1], 9))):
        print(f"{source:>8} -> {target:<8} {count}")
    found = problems(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports between them, {len(found)} problems")
    for line in found:
        print("  " + line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
