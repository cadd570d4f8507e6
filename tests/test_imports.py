"""The import graph of alr's modules, built with `ast` (imports inside functions and under
TYPE_CHECKING included): no cycle, so each module can be read, tested and imported on its own, and
the layers (errors, sections, catalogue, config, the registries, the commands) stay layers."""

import ast
import re
from pathlib import Path

from tests.tiny import REPO


def import_graph(package: Path) -> dict[str, set[str]]:
    """{module: the modules of the same tree it imports}, dotted names from the repository root."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package_name = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package_name.split(".")[: len(package_name.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found |= {t for t in [target, *(f"{target}.{a.name}" for a in node.names)] if t in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        graph[name] = found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycles_finds_a_cycle_and_only_that():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_report_package_has_no_import_cycle():
    graph = import_graph(REPO / "alr")
    report = {
        m: {t for t in deps if t.startswith("alr.report")} for m, deps in graph.items() if m.startswith("alr.report")
    }
    assert "alr.report.render" in report["alr.report.claims"]  # the graph sees relative imports
    assert cycles(report) == []


def test_alr_has_no_import_cycle():
    graph = import_graph(REPO / "alr")
    assert (
        "alr.core.errors" in graph["alr.config"] and "alr.config" in graph["alr.methods.registry"]
    )  # the graph is real
    assert cycles(graph) == []


# alr's packages from the bottom up: a package imports only packages of lower layers (the stage
# packages' __init__ docstrings say the same); one layer's packages do not import each other
LAYERS = [
    {"core"},
    {"assets"},
    {"config"},
    {"model"},
    {"importance"},
    {"methods"},
    {"finetune", "evaluate"},
    {"report"},
    {"export", "plugins"},
    {"cli"},
    {"__main__"},
]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(_package(m), _package(d)) for m, deps in graph.items() for d in deps if _package(m) != _package(d)}


def upward_edges(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    layer = {package: i for i, packages in enumerate(LAYERS) for package in packages}
    return sorted((a, b) for a, b in edges if layer[b] >= layer[a])


def test_upward_edges_finds_an_import_against_the_layers():
    assert upward_edges({("evaluate", "core"), ("core", "assets"), ("finetune", "evaluate")}) == [
        ("core", "assets"),
        ("finetune", "evaluate"),
    ]


def test_every_package_is_layered_and_imports_only_below_itself():
    graph = import_graph(REPO / "alr")
    edges = package_edges(graph)
    assert ("evaluate", "methods") in edges and ("report", "evaluate") in edges  # the graph is real
    packages = {_package(m) for m in graph} - {"alr"}
    assert packages == set().union(*LAYERS)
    assert upward_edges(edges) == []


def test_alr_top_level_holds_few_modules_besides_the_stage_packages():
    modules = sorted(p.name for p in (REPO / "alr").glob("*.py"))
    assert len(modules) <= 6, modules


def test_config_imports_no_registry():
    """The schema receives the registries' names (alr.config.schema_registry); config imports neither."""
    graph = import_graph(REPO / "alr")
    seen, todo = set(), ["alr.config"]
    while todo:
        module = todo.pop()
        seen.add(module)
        todo += [m for m in graph[module] if m not in seen]
    assert not seen & {"alr.methods.registry", "alr.importance.estimators", "alr.plugins"}


def _registered_name_literals(path: Path, names: set[str]) -> list[str]:
    """`file:line name` for each string literal of `path` that is a registered method or estimator name,
    leaving out what only shares the spelling: config sections (subscripts), record fields (dict keys),
    path parts and the package's own name in calls (logger, version, parser)."""
    tree = ast.parse(path.read_text())
    shared = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            shared.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            shared |= {id(k) for k in node.keys if k is not None}
        elif isinstance(node, ast.BinOp):
            shared |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("getLogger", "version", "ArgumentParser", "get"):
                shared |= {id(a) for a in node.args} | {id(k.value) for k in node.keywords}
    return [
        f"{path.relative_to(REPO)}:{n.lineno} {n.value}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and n.value in names and id(n) not in shared
    ]


def test_no_method_or_estimator_name_outside_the_registries():
    """Only the registries (methods, estimators, the claims table) spell out a method's or an estimator's
    name; everything else asks them (constants such as PLAIN, SI, FISHER, or the entries' fields)."""
    from alr.importance.estimators import ESTIMATORS
    from alr.methods.registry import METHODS

    names = set(METHODS) | set(ESTIMATORS)
    # the claims and their protocol name the methods and estimators they compare
    owners = ("methods/registry.py", "importance/estimators.py", "report/claims.py", "report/protocol.py")
    registries = {REPO / "alr" / p for p in owners}
    found = [
        hit
        for path in sorted((REPO / "alr").rglob("*.py"))
        if path not in registries
        for hit in _registered_name_literals(path, names)
    ]
    smk = [
        f"{p.relative_to(REPO)}: {m}"
        for p in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]
        for m in re.findall(r"""["'](\w+)["']""", p.read_text())
        if m in names
    ]
    assert found + smk == []


def test_only_runs_reads_a_strength_out_of_a_run_name():
    """Reports take a run's strength from its records (`recorded_strength`); the name's value is read in
    alr/methods/runs.py alone, where it is checked against the configured grid."""
    readers = [
        str(path.relative_to(REPO))
        for path in [*(REPO / "alr").rglob("*.py"), *(REPO / "workflow").rglob("*.smk")]
        if path.name != "runs.py" and re.search(r"\bparse_run\b|-lambda\(", path.read_text())
    ]
    assert readers == []


def test_the_stages_receive_a_run_and_never_resolve_a_name():
    """`alr finetune` and `alr evaluate` are handed a resolved `Run` (the CLI resolves `--run-name` once, the
    workflow once per run name): neither stage package calls the resolver or re-reads a name."""
    callers = [
        str(path.relative_to(REPO))
        for package in ("finetune", "evaluate")
        for path in (REPO / "alr" / package).rglob("*.py")
        if re.search(r"\b(resolve_run|run_method|parse_run)\(", path.read_text())
    ]
    assert callers == []
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert common.count("resolve_run(") == 1  # RUN_OF: every rule reads the run it resolved
