"""The house, checked: no import cycle inside the runtime, no module using another module's private names, and
no module past MAX_MODULE_LINES. Every import is read from the source (lazy ones inside functions too), so a
cycle that only one code path would walk is still found."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gem_runtime": ROOT / "runtime", "gem_train": ROOT / "gem_train", "gem_export": ROOT / "export",
            "benchmarks": ROOT / "benchmarks"}
MAX_MODULE_LINES = 400


def _modules(package: str) -> dict[str, Path]:
    base = PACKAGES[package]
    return {".".join((package,) + p.relative_to(base).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(base.rglob("*.py"))}


def _imported(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str, str]]:
    """(line, module imported from, the name imported) for each import of a module of the same package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for a in node.names:
                sub = f"{source}.{a.name}"
                found.append((node.lineno, sub if sub in modules else source, a.name))
    return [(line, mod, what) for line, mod, what in found if mod in modules]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on.discard(w)
                component.append(w)
            on.discard(v)
            if component:
                found.append(sorted(component + [v]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_runtime():
    modules = _modules("gem_runtime")
    graph = {name: {mod for _, mod, _ in _imported(name, path, modules)} - {name} for name, path in modules.items()}
    assert not _cycles(graph), _cycles(graph)


def test_the_cycle_check_sees_a_lazy_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_another_modules_private_name(package):
    modules = _modules(package)
    bad = [f"{path.relative_to(ROOT)}:{line} imports {what} from {mod}" for name, path in modules.items()
           for line, mod, what in _imported(name, path, modules)
           if what.startswith("_") and not what.startswith("__")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_uses_a_private_attribute_it_does_not_define(package):
    """`other._name` where no def, class or assignment in this module makes `_name`: another module's private
    method or attribute (stop._handle, engine._interpreter(), meas._not_measurable were)."""
    bad = []
    for path in _modules(package).values():
        tree = ast.parse(path.read_text(), str(path))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.ClassDef))}
        defined |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
        defined |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bad += [f"{path.relative_to(ROOT)}:{n.lineno} uses {ast.unparse(n)}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")) and n.attr not in defined]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_is_under_the_line_limit(package):
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _modules(package).values()
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, "\n".join(big)
