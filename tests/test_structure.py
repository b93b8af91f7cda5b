"""The house's rules, read from the code itself: imports only run down the layers (and never in a
circle), no module over 400 lines, no long functions where a run is put together, where clips are made,
in the copy recording and in the web view.

Every import counts, those inside functions too (the lazy ones that keep aiohttp or paho unloaded);
names imported for annotations only (`if TYPE_CHECKING:`) do not, as they load nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "streamdet"

# Bottom first. A module may import from its own layer and those below it, never from one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("errors", "privacy", "urls", "clock", "files", "measures", "config")),
    ("data", ("detections", "scene", "drawing", "tracking", "sources", "model")),
    ("inputs and outputs", ("outputs", "engines")),
    ("stages and threads", ("motion", "events", "clips", "stages", "scheduler", "reports", "web")),
    ("a run", ("assembly", "pipeline")),
    ("commands", ("bench", "cli", "__main__", "__init__")),
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SHORT_FUNCTIONS_IN = ("assembly/", "clips", "outputs/clips", "outputs/copy", "web/")
MAX_ROOT_MODULES = 16  # beside __init__ and __main__: past that, a concern wants a package of its own


def modules() -> dict[str, Path]:
    """Dotted name (without `streamdet.`) of every module, `__init__` for the package itself."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for rank, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return rank
    raise AssertionError(f"streamdet.{name} is in no layer: add its top name to LAYERS in tests/test_structure.py")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The streamdet modules a module imports, anywhere in it."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "__init__":
        package = []
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    # Names imported only for annotations (`if TYPE_CHECKING:`) load nothing at run time: not an arrow.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("streamdet.") for a in node.names if a.name.startswith("streamdet.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "streamdet" or node.module.startswith("streamdet.")):
                stem = node.module.removeprefix("streamdet").removeprefix(".")
            else:
                continue
            # `from . import x` and `from .pkg import mod` name modules; `from .mod import Name` names the module.
            targets = [f"{stem}.{a.name}".lstrip(".") for a in node.names if f"{stem}.{a.name}".lstrip(".") in known]
            if not targets and stem:
                targets = [stem]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


@pytest.mark.unit
def test_imports_run_down_the_layers_only():
    upward = [f"streamdet.{a} ({LAYERS[layer_of(a)][0]}) imports streamdet.{b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in graph().items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


@pytest.mark.unit
def test_outputs_know_nothing_of_events_clips_or_the_run():
    above = {"events", "clips", "stages", "assembly", "wiring", "pipeline", "scheduler", "web"}
    wrong = [f"streamdet.{a} imports streamdet.{b}" for a, targets in graph().items() if a.startswith("outputs")
             for b in targets if b.split(".")[0] in above]
    assert not wrong, "\n".join(wrong)


@pytest.mark.unit
def test_no_circle_between_modules():
    edges = graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, set())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(circles)


@pytest.mark.unit
def test_at_most_16_modules_at_the_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the root of streamdet/: {', '.join(root)}"


@pytest.mark.unit
def test_no_module_over_400_lines():
    long = [f"{path.relative_to(PACKAGE.parent)}: {n} lines" for path in modules().values()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, "\n".join(long)


@pytest.mark.unit
def test_no_long_function_where_a_run_is_put_together_or_served():
    long = []
    for name, path in modules().items():
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(SHORT_FUNCTIONS_IN):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"streamdet/{relative}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


@pytest.mark.unit
def test_the_checks_see_a_wrong_import(tmp_path):
    """The import reader itself: an upward import, written the ways the code writes them, is found."""
    (tmp_path / "outputs").mkdir()
    sample = tmp_path / "outputs" / "sample.py"
    sample.write_text("from ..events import Event\n"
                      "def f():\n    from ..web import WebView\n    from .. import pipeline\n")
    known = {"events", "web", "pipeline", "outputs", "outputs.sample"}
    assert imports_of("outputs.sample", sample, known) == {"events", "web", "pipeline"}
