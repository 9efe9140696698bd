"""The example method of docs/adding-a-method.md works as printed.

Why: a walkthrough whose code does not run teaches nothing. The page's example is taken from the
page itself (the ```python block that registers a method), written to a file, imported — which
registers it — and put through the shared method tester of tests/test_methods.py (trains through
the real Trainer, finite loss, one log row per step, bit-identical resume). The method is removed
from the registry afterwards, so the other tests (docs pages, the shared tester's parameters) see
the built-in methods only.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from scarce.methods import METHODS, load_builtin_methods

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md"


def example_source() -> tuple[str, str]:
    """(method name, code) of the page's ```python block that calls ``@register_method``."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), flags=re.S | re.M)
    found = [b for b in blocks if "@register_method(" in b]
    assert len(found) == 1, f"{PAGE} should hold one ```python block with @register_method, found {len(found)}"
    name = re.search(r'@register_method\("(\w+)"\)', found[0]).group(1)
    return name, found[0]


@pytest.fixture
def example_method(tmp_path):
    """Register the page's method for one test; unregister it afterwards."""
    load_builtin_methods()
    name, code = example_source()
    assert name not in METHODS, f"the example's name {name!r} is a built-in method"
    path = tmp_path / f"docs_example_{name}.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
        assert name in METHODS
        yield name
    finally:
        METHODS._items.pop(name, None)
        sys.modules.pop(path.stem, None)


def test_example_is_about_thirty_lines():
    _, code = example_source()
    assert len(code.strip().splitlines()) <= 45


def test_example_method_trains_logs_and_resumes_identically(tmp_path, example_method):
    from tests.test_methods import test_method_trains_and_resumes_identically

    test_method_trains_and_resumes_identically(tmp_path, example_method)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0].split(",")
    assert {"sup", "entropy"} <= set(header), header


def test_example_method_keys_are_checked_and_documented(example_method):
    from scarce.config import ConfigError
    from scarce.methods import method_spec
    from scarce.methods.docs import field_docs

    spec = method_spec({"name": example_method, "weight": 0.3})
    assert spec.config.weight == 0.3 and spec.config.augment == "combine"
    assert field_docs(spec.cls.Config)["weight"].startswith("λ: weight")
    with pytest.raises((ConfigError, KeyError), match="weight"):
        method_spec({"name": example_method, "wieght": 1.0})


def test_the_shared_tester_does_not_see_the_example():
    """Registered only inside the tests above: the built-in list stays as the docs pages show."""
    name, _ = example_source()
    assert name not in load_builtin_methods()
