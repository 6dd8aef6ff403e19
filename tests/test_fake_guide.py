"""The emulator guide's examples run as written: each Python block is a complete program,
run as ``__main__`` with no ResourceWarning or unclosed session allowed; the printed lines it
documents (``# ...`` comments after a ``print``, and ``text`` blocks) are what it prints."""

from __future__ import annotations

import gc
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from qomon_async.testing import FakeQomon

GUIDE = Path(__file__).parent.parent / "docs" / "guides" / "emulator.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z")


def blocks() -> list[tuple[str, str, str | None]]:
    """(name, code, the ``text`` block that follows it, if any) for each Python block."""
    found = BLOCK.findall(GUIDE.read_text())
    result: list[tuple[str, str, str | None]] = []
    for index, (language, code) in enumerate(found):
        if language != "python":
            continue
        following = found[index + 1] if index + 1 < len(found) else None
        output = following[1] if following and following[0] == "text" else None
        result.append((f"block{len(result) + 1}", code, output))
    return result


def documented_prints(code: str) -> list[str]:
    # `print(...)  # 30`: the comment is the documented output, when it is a value.
    lines = []
    for line in code.splitlines():
        match = re.match(r"\s*print\(.*\)\s+# (.+)$", line)
        if match:
            lines.append(match.group(1).split(":")[0].strip())
    return lines


def run_program(
    code: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> list[str]:
    """Run ``code`` as ``__main__`` in this interpreter; fail on any ResourceWarning or an
    unclosed aiohttp session; return the printed lines."""
    capsys.readouterr()
    gc.collect()  # what earlier tests left behind is not this program's
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always", ResourceWarning)
        exec(compile(code, "<guide>", "exec"), {"__name__": "__main__"})
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(("name", "code", "output"), blocks(), ids=[b[0] for b in blocks()])
def test_guide_example_runs(
    name: str,
    code: str,
    output: str | None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if "def test_" in code:
        # A pytest module: its tests called with the emulator the `fake_qomon` fixture gives
        # (the fixture and its mark are tested with a real pytest run in test_fake_plugin).
        namespace: dict[str, Any] = {"__name__": name}
        exec(compile(code, "<guide>", "exec"), namespace)
        tests = [value for key, value in namespace.items() if key.startswith("test_")]
        assert tests
        for test in tests:
            marks = [m for m in getattr(test, "pytestmark", []) if m.name == "fake_qomon"]
            with FakeQomon(**(marks[0].kwargs if marks else {})) as fake:
                test(fake)
        return
    printed = run_program(code, capsys, caplog)
    # Each value documented in a `print(...)  # value` comment appears, in order.
    position = 0
    for value in documented_prints(code):
        while position < len(printed) and value not in printed[position]:
            position += 1
        assert position < len(printed), (value, printed)
        position += 1
    if output is not None:
        # Timestamps change from run to run; everything else is as documented.
        assert [STAMP.sub("<time>", line) for line in printed] == [
            STAMP.sub("<time>", line) for line in output.strip().splitlines()
        ]


def test_the_guide_has_the_examples_it_promises() -> None:
    codes = [code for _, code, _ in blocks()]
    assert len(codes) >= 7
    assert any('route="POST /contacts"' in c and "when=lambda" in c for c in codes)
    assert any(".body" in c and "fake.requests" in c for c in codes)
    assert all("async with FakeQomon" in c or "def test_" in c for c in codes)
