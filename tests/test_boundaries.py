"""The architecture, checked: data flows train -> export -> bundle -> runtime, and a cart installs the runtime
only. Every import statement is read (including the lazy ones inside functions), not just what one run
happens to load."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gem_runtime": ROOT / "runtime", "gem_train": ROOT / "gem_train", "gem_export": ROOT / "export",
            "benchmarks": ROOT / "benchmarks"}
FORBIDDEN = {
    "gem_runtime": {"torch", "transformers", "gem_train", "gem_export", "benchmarks", "safetensors", "onnx"},
    "gem_train": {"gem_export", "benchmarks"},
    "gem_export": {"benchmarks"},
}
MAX_MODULE_LINES = 450


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in a file; relative imports resolved to `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    return found


def _modules(package: str) -> list[Path]:
    return sorted(PACKAGES[package].rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_the_boundary(package):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _modules(package)
           for line, mod in _imports(p, package) if mod in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_the_scan_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import torch.nn as nn\n    from gem_train.model import X\n    from . import y\n")
    assert _imports(f, "gem_runtime") == [(2, "torch"), (3, "gem_train"), (4, "gem_runtime")]


def test_runtime_imports_alone():
    """Every runtime module imports with the training, export and benchmark packages made unimportable."""
    names = sorted("gem_runtime." + ".".join(p.relative_to(PACKAGES["gem_runtime"]).with_suffix("").parts)
                   .removesuffix(".__init__") for p in _modules("gem_runtime"))
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers', 'gem_train', 'gem_export', 'benchmarks'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import importlib\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "print('ok', len(sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stderr


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_modules_stay_small(package):
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _modules(package)
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, "\n".join(big)


def test_every_subpackage_is_listed_in_pyproject():
    """setuptools installs only the packages it is told of: a wheel without gem_runtime.readers would not run."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join((name, *init.parent.relative_to(folder).parts))
             for name, folder in PACKAGES.items() for init in folder.rglob("__init__.py")}
    data_only = set(setuptools["package-data"]) - found      # folders of data files (the viewer's static files)
    assert found | data_only == listed
