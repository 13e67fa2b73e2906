"""The package as installed: its type stubs describe the native module exactly, and the documented
example (docs/python.md) is python/examples/quickstart.py, which runs."""
from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgetune
from conftest import ROOT

PACKAGE = Path(edgetune.__file__).parent
EXAMPLE = ROOT / "python" / "examples" / "quickstart.py"


def test_installed_package_ships_the_stubs():
    # The installed copy, not the source tree (which has no native module).
    assert Path(edgetune._native.__file__).parent == PACKAGE and "site-packages" in str(PACKAGE)
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "__init__.pyi").read_text() == (ROOT / "python" / "edgetune" / "__init__.pyi").read_text()
    assert edgetune.__version__ == "0.1.0"


def stub_tree() -> ast.Module:
    return ast.parse((ROOT / "python" / "edgetune" / "__init__.pyi").read_text())


def signature_of(fn: ast.FunctionDef) -> list[tuple[str, str, object]]:
    """(name, kind, default) of each parameter of a stub function, `self` left out."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + a.defaults
    for arg, d in zip(positional, defaults):
        if arg.arg != "self":
            out.append((arg.arg, "POSITIONAL_OR_KEYWORD", ast.literal_eval(d) if d else inspect.Parameter.empty))
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", ast.literal_eval(d) if d else inspect.Parameter.empty))
    return out


def runtime_signature(obj) -> list[tuple[str, str, object]]:
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "POSITIONAL_OR_KEYWORD"}  # pyo3 marks `self` positional-only
    return [
        (p.name, kinds.get(p.kind, p.kind.name), p.default)
        for p in inspect.signature(obj).parameters.values()
        if p.name != "self"
    ]


def check_function(fn: ast.FunctionDef, runtime, where: str) -> None:
    doc = ast.get_docstring(fn)
    assert doc, f"{where}: no docstring in the stub"
    is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)
    if is_property:
        return
    assert signature_of(fn) == runtime_signature(runtime), where
    for name, _, _ in signature_of(fn):
        assert re.search(rf"\b{name}\b", doc), f"{where}: argument {name} is not documented"


def test_stubs_match_the_native_module():
    public = set(edgetune.__all__) - {"__version__"}
    seen = set()
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            check_function(node, getattr(edgetune, node.name), node.name)
            seen.add(node.name)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            cls = getattr(edgetune, node.name)
            assert ast.get_docstring(node), f"{node.name}: no docstring in the stub"
            members = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            runtime_members = {n for n in vars(cls) if not n.startswith("_")}
            if issubclass(cls, BaseException):
                assert [b.id for b in node.bases][0] == cls.__base__.__name__
            else:
                assert members - {"__init__"} == runtime_members, node.name
            for fn in (n for n in node.body if isinstance(n, ast.FunctionDef)):
                runtime = cls if fn.name == "__init__" else getattr(cls, fn.name)
                check_function(fn, runtime, f"{node.name}.{fn.name}")
            seen.add(node.name)
    assert seen == public


def test_errors_are_one_hierarchy_with_a_kind():
    assert issubclass(edgetune.InputError, edgetune.Error) and issubclass(edgetune.RunError, edgetune.Error)
    assert issubclass(edgetune.Stopped, edgetune.Error) and issubclass(edgetune.Error, Exception)
    with pytest.raises(edgetune.Error) as raised:
        edgetune.Session(ROOT / "no-such-model.onnx")
    assert type(raised.value) is edgetune.InputError and raised.value.kind == "io"


def test_the_documented_example_is_quickstart_py():
    doc = (ROOT / "docs" / "python.md").read_text()
    section = doc[doc.index("## A complete example"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text()


def test_quickstart_runs(tmp_path):
    # Run as the page says: from the repository root, with the installed package. Its outputs
    # from an earlier run go first, so that the check below sees this run's.
    written = ROOT / "build" / "quickstart" / "digits_finetuned.onnx"
    written.unlink(missing_ok=True)
    p = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "inputs [('input', ('N', 3, 32, 32))] outputs [('logits', ('N', 10))]"
    # The exported model gives the trainer's logits: the inference contract's 1e-4 of the output
    # scale (design.md), logits of these digits reaching ~10 (6.7e-6 when docs/python.md was made).
    diff = float(re.search(r"max difference ([0-9.e+-]+)\)", p.stdout).group(1))
    assert diff < 1e-3
    assert lines[-1] == ("InputError (config): invalid value 'adamx' for '--optimizer <OPTIMIZER>' "
                         "[possible values: sgd, adam, adamw]")
    assert written.exists()
