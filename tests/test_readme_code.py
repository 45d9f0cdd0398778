"""The README's "Add your own explainer" example works as printed: its two code blocks (the method file and its
test) are written into a temporary package, never into methods/, the registry reads that package the way it reads
methods/, and the example's own test passes. A user who has followed the example (methods/top_open.py exists) keeps
a green suite: the probe registers into a registry copy without their `top_open`."""

import re
import sys
from pathlib import Path

import pytest

from methods import registry

ROOT = Path(__file__).resolve().parent.parent


def code_blocks(text: str) -> dict[str, str]:
    """{first-line comment path: code} of the ```python blocks that start with a `# path.py` comment."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", text, re.S)
    return {path: code for path, code in blocks}


@pytest.fixture
def readme_package(tmp_path, monkeypatch):
    blocks = code_blocks((ROOT / "README.md").read_text())
    assert {"methods/top_open.py", "tests/test_top_open.py"} <= set(blocks), sorted(blocks)
    package = tmp_path / "readme_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "top_open.py").write_text(blocks["methods/top_open.py"])
    test_code = blocks["tests/test_top_open.py"].replace("from methods.top_open import",
                                                         "from readme_methods.top_open import")
    monkeypatch.syspath_prepend(str(tmp_path))
    # a copy, so the probe leaves no method behind, without the user's own top_open if they followed the README
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k != "top_open"})
    yield test_code
    for name in [m for m in sys.modules if m == "readme_methods" or m.startswith("readme_methods.")]:
        del sys.modules[name]


def test_the_readme_explainer_registers_and_its_test_passes(readme_package):
    assert registry.import_modules("readme_methods") == ["readme_methods.top_open"]
    spec = registry.get("top_open")
    assert spec.is_baseline and spec.kind == "control"
    namespace: dict = {}
    exec(compile(readme_package, "README.md:tests/test_top_open.py", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()
