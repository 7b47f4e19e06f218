"""The house's conventions, checked against the code: services are given a
context, never the request; no task assigns to the request it runs in; no
module imports one that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import guestguard

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


PACKAGE = Path(guestguard.__file__).parent

# Where domain logic lives: each takes a Context (``ctx``) and plain values.
SERVICE_MODULES = (
    "accounts/services.py", "workspaces/services.py", "events/services.py", "events/invitations.py",
    "guard/access.py", "guard/flags.py", "activity/feed.py", "activity/stream.py", "activity/live.py",
    "notifications/services.py", "notifications/tasks.py", "notifications/suppression.py",
    "notifications/unsubscribe.py", "notifications/delivery.py", "audit/services.py", "domain.py",
    "webhooks/services.py", "webhooks/tasks.py",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functions(path: Path):
    return [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)]


def is_hookimpl(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "hookimpl" for d in node.decorator_list)


def request_takers(path: Path, module: str, tasks: set[str]) -> list[str]:
    """Functions of ``path`` with a ``request`` parameter that are neither a
    registered task nor a plugin hook (an entry point is given the request;
    a service is given the context)."""
    offenders = []
    for node in functions(path):
        names = [arg.arg for arg in node.args.args + node.args.kwonlyargs]
        if "request" in names and f"{module}.{node.name}" not in tasks and not is_hookimpl(node):
            offenders.append(node.name)
    return offenders


def request_assignments(path: Path) -> list[int]:
    """Lines of ``path`` that assign an attribute of ``request``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [node.lineno for target in targets if isinstance(target, ast.Attribute)
                      and isinstance(target.value, ast.Name) and target.value.id == "request"]
    return lines


@pytest.mark.parametrize("relative", SERVICE_MODULES)
def test_services_take_a_context_and_only_tasks_and_hooks_take_the_request(relative, registry):
    path = PACKAGE / relative
    assert request_takers(path, module_name(path), set(registry["huey.tasks"])) == []


@pytest.mark.parametrize("relative", SERVICE_MODULES)
def test_no_task_or_service_assigns_to_the_request(relative):
    assert request_assignments(PACKAGE / relative) == []


def test_the_checks_catch_a_service_given_the_request_and_a_task_that_changes_it(tmp_path):
    module = tmp_path / "services.py"
    module.write_text(
        "def rename(request, name):\n    request.db.name = name\n\n"
        "def nightly(request):\n    request.client_ip = '203.0.113.9'\n\n"
        "def rename_too(ctx, name):\n    ctx.db.name = name\n")
    assert request_takers(module, "area.services", {"area.services.nightly"}) == ["rename"]
    assert request_assignments(module) == [5]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """What ``path`` imports from the package when it is loaded (top-level
    statements only: imports inside functions run later)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("guestguard"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("guestguard"))
    return {name for name in found if name in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def service_functions() -> set[str]:
    """Names of the functions in the service modules that take the context."""
    return {node.name for relative in SERVICE_MODULES for node in functions(PACKAGE / relative)
            if node.args.args and node.args.args[0].arg == "ctx"}


def request_passed_to_services(path: Path, services: set[str]) -> list[int]:
    """Lines of ``path`` that call a service with the request where its
    context belongs (it would work by accident: a request has the same
    attributes, but not the service's promises)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        first = node.args[0]
        if name in services and isinstance(first, ast.Name) and first.id in ("request", "r"):
            lines.append(node.lineno)
    return lines


def test_services_are_called_with_the_context():
    services = service_functions()
    tests = Path(__file__).parent
    paths = [*PACKAGE.rglob("*.py"), *tests.rglob("*.py"), *tests.parent.glob("plugins/*/tests/*.py")]
    found = {str(path): lines for path in sorted(paths) if (lines := request_passed_to_services(path, services))}
    assert found == {}


def test_the_call_check_catches_a_service_given_the_request(tmp_path):
    module = tmp_path / "views.py"
    module.write_text("def view(request):\n    services.create_event(request, 1)\n"
                      "    services.create_event(request.ctx, 1)\n")
    assert request_passed_to_services(module, {"create_event"}) == [2]
