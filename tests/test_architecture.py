"""docs/architecture.md's table of imports between packages is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import grimp

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def documented() -> dict[str, set[str]]:
    text = DOC.read_text()
    table = text[text.index("<!-- imports:begin -->") : text.index("<!-- imports:end -->")]
    rows = re.findall(r"^\| `([\w.]+)` \| (.*) \|$", table, flags=re.M)
    return {package: set(re.findall(r"`([\w.]+)`", imports)) for package, imports in rows}


def test_the_documented_imports_are_the_code_s() -> None:
    doc = documented()
    graph = grimp.build_graph("beliefscope", "ingest", "server", "dashboard")

    def owner(module: str) -> str | None:
        found = [p for p in doc if module == p or module.startswith(p + ".")]
        return max(found, key=len) if found else None

    unowned = sorted(m for m in graph.modules if owner(m) is None and m != "beliefscope")
    assert not unowned, f"packages missing from docs/architecture.md: {unowned}"
    actual: dict[str, set[str]] = {package: set() for package in doc}
    for module in graph.modules:
        source = owner(module)
        for imported in graph.find_modules_directly_imported_by(module):
            target = owner(imported)
            if source and target and target != source:
                actual[source].add(target)
    assert actual == doc
