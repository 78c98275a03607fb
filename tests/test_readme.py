"""Every ```python block of the README runs (in a temp folder, in order).

Hub calls go to the test Hub server on 127.0.0.1 (the ``hub_env`` fixture), as the test user:
``your-name`` in the README stands for that user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_snippets(tmp_path, monkeypatch, hub_env):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show Python usage"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        block = block.replace("your-name", hub_env.user)
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README is ours
