"""Imports inside sigtrace point one way: from farther from the kernel to nearer, never back.

Each module has a layer (LAYERS, bottom first); a module may import its own layer's modules
and lower ones. An import found anywhere in a module counts, also one inside a function.
A new module fails until it is given a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sigtrace"

# Bottom first. A name matches a module or, with a trailing dot, a package and its modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the kernel, /proc and the wire format; pure tables and helpers
    ("sigtrace", "sigtrace.errors", "sigtrace.escape", "sigtrace.signals", "sigtrace.wire",
     "sigtrace.timefmt", "sigtrace.verdicts", "sigtrace.syscalls", "sigtrace.ringbuf",
     "sigtrace.log", "sigtrace.config", "sigtrace.features", "sigtrace.libbpf",
     "sigtrace.procfs", "sigtrace.classify", "sigtrace.rawlog"),
    ("sigtrace.containers.",),  # runtimes and cgroups: who a process is
    ("sigtrace.backends.",),  # the kernel's events as wire records
    ("sigtrace.correlate", "sigtrace.enrich"),  # wire records → output records, named
    ("sigtrace.predict", "sigtrace.proctree"),  # what a stop will do, from /proc now
    # what the records mean: stories, verdicts, Kubernetes
    ("sigtrace.story_fields", "sigtrace.story_tree", "sigtrace.story_rules", "sigtrace.story_text",
     "sigtrace.stories",
     "sigtrace.kubegrace", "sigtrace.metrics", "sigtrace.k8s_api", "sigtrace.k8s_events"),
    ("sigtrace.output.", "sigtrace.schema"),  # writing records
    ("sigtrace.session", "sigtrace.runner", "sigtrace.output_loss"),  # one tracing run, end to end
    ("sigtrace.commands.", "sigtrace.cli", "sigtrace.__main__", "sigtrace.manpage"),
)  # fmt: skip


def layer_of(module: str) -> int:
    found = [
        i
        for i, names in enumerate(LAYERS)
        for n in names
        if module in (n, n.rstrip(".")) or (n.endswith(".") and module.startswith(n))
    ]
    assert found, f"{module} has no layer: add it to LAYERS in {__file__}"
    return found[-1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The sigtrace modules `path` imports (`from sigtrace import wire` → sigtrace.wire)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "sigtrace"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "sigtrace":
                continue
            out.add(node.module)
            for a in node.names:  # a submodule imported by name
                sub = f"{node.module}.{a.name}"
                if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / sub.replace(".", "/")
                ).is_dir():
                    out.add(sub)
    return out


def edges() -> set[tuple[str, str]]:
    return {
        (module_name(p), dep)
        for p in sorted(PACKAGE.rglob("*.py"))
        for dep in imported(p)
        if dep != module_name(p)
    }


def back_edges(all_edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in all_edges if layer_of(b) > layer_of(a)}


def test_imports_point_toward_the_kernel() -> None:
    found = back_edges(edges())
    assert found == set(), "imports from a higher layer"


@pytest.mark.parametrize(
    "edge",
    [
        ("sigtrace.procfs", "sigtrace.correlate"),
        ("sigtrace.predict", "sigtrace.story_text"),
        ("sigtrace.backends.proctask", "sigtrace.enrich"),
    ],
)
def test_the_check_sees_a_back_edge(edge: tuple[str, str]) -> None:
    # Edges issue 13 removed (procfs → correlate, predict → story_text) or never wants.
    assert back_edges({edge}) == {edge}
