"""The layering of openvpc's packages, read from the sources with `ast`: the shared vocabulary
(model/, packet/) depends on no component, the compiler not on the vRouter, the agent on the
vRouter's channel protocol only, and the vRouter on no control-plane component."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "openvpc"


@dataclass(frozen=True)
class Rule:
    """Modules of `package` may import nothing under `forbidden` except under `allowed`."""

    package: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    why: str = ""


_COMPONENTS = ("vrouter", "compiler", "agent", "api", "service", "lab")
RULES = (
    Rule("model", _COMPONENTS, why="model/ is the vocabulary every component shares"),
    Rule("packet", _COMPONENTS, why="packet/ is the wire format every component shares"),
    Rule(
        "compiler",
        ("vrouter", "agent", "lab"),
        why="the compiler speaks the model, not the vRouter's internals",
    ),
    Rule(
        "agent",
        ("vrouter",),
        allowed=("vrouter.control", "vrouter.punt"),
        why="the agent knows the vRouter only by its channel protocol (control, punt)",
    ),
    Rule(
        "vrouter",
        ("agent", "compiler", "service", "api", "lab"),
        why="the vRouter is programmed through its channel, it uses no control-plane code",
    ),
)


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in `source`, also inside functions and
    TYPE_CHECKING blocks; `from a import b` yields a.b (b may be a module or an attribute),
    relative imports are resolved against `module` (the importing module's dotted name)."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return names


def violations(rule: Rule, source: str, module: str, where: str) -> list[str]:
    found = []
    for line, name in imported_names(source, module):
        if not _under(name, "openvpc"):
            continue
        inner = name.removeprefix("openvpc.")
        if any(_under(inner, f) for f in rule.forbidden) and not any(
            _under(inner, a) for a in rule.allowed
        ):
            found.append(f"{where}:{line} imports {name} ({rule.why})")
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("rule", RULES, ids=[r.package for r in RULES])
def test_package_imports_follow_the_layering(rule: Rule) -> None:
    paths = _sources(rule.package)
    assert paths, f"no sources under openvpc/{rule.package}: the rule checks nothing"
    found = []
    for path in paths:
        where = str(path.relative_to(ROOT.parent))
        found += violations(rule, path.read_text(), _module(path), where)
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_the_check_names_an_offending_import() -> None:
    """The checker itself: each way of importing a forbidden module is caught, and named."""
    agent = next(r for r in RULES if r.package == "agent")
    source = "\n".join(
        [
            "from openvpc.vrouter.control import ControlClient",
            "from openvpc.vrouter import punt",
            "from openvpc.vrouter.pipeline import process",
            "import openvpc.vrouter.tables",
            "from openvpc import vrouter",
            "def f() -> None:",
            "    from ..vrouter.flow import FlowTable",
            "from openvpc.vrouterx import nothing",
        ]
    )
    found = violations(agent, source, "openvpc.agent.x", "openvpc/agent/x.py")
    assert [v.split(" (")[0] for v in found] == [
        "openvpc/agent/x.py:3 imports openvpc.vrouter.pipeline.process",
        "openvpc/agent/x.py:4 imports openvpc.vrouter.tables",
        "openvpc/agent/x.py:5 imports openvpc.vrouter",
        "openvpc/agent/x.py:7 imports openvpc.vrouter.flow.FlowTable",
    ]
