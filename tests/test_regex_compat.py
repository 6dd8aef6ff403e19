"""The package's regular expressions parse on the oldest Python it supports (3.10).

mypy (``python_version = "3.10"``) and ruff (``py310``) hold the code to 3.10, but neither
reads the syntax inside a regular expression: possessive repeats (``a++``) and atomic groups
(``(?>...)``) compile on 3.11 and raise ``re.error`` on 3.10, at import time.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import qomon_async

#: The parser behind ``re.compile``: ``re._parser`` from 3.11, ``sre_parse`` before.
_parser: Any = getattr(re, "_parser", None) or importlib.import_module("sre_parse")

#: Top-level packages of the optional extras: modules needing them are passed over without.
OPTIONAL = {"redis"}
#: Opcodes of the 3.11 parser that 3.10's does not know.
NEWER_THAN_310 = {"POSSESSIVE_REPEAT", "ATOMIC_GROUP"}


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    found = []
    for info in pkgutil.walk_packages(qomon_async.__path__, "qomon_async."):
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:  # an optional extra not installed (redis)
            missing = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
            if missing.name in OPTIONAL:
                continue
            raise
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                found.append((f"{info.name}.{name}", value))
    return found


def _opcodes(parsed: Any) -> set[str]:
    """Every opcode name in a parsed pattern, nested ones included."""
    names: set[str] = set()
    for op, argument in parsed:
        names.add(str(op))
        stack = [argument]
        while stack:
            item = stack.pop()
            if hasattr(item, "data"):  # a nested SubPattern
                names |= _opcodes(item)
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
    return names


def test_no_regular_expression_needs_python_311() -> None:
    patterns = _patterns()
    assert any(name.endswith("._FAST_MAIL") for name, _ in patterns)  # the walk finds them
    newer = {
        name: sorted(_opcodes(_parser.parse(p.pattern, p.flags)) & NEWER_THAN_310)
        for name, p in patterns
    }
    assert {name: ops for name, ops in newer.items() if ops} == {}


def test_the_walk_sees_possessive_repeats() -> None:
    """The check itself can fail: where the running Python parses a possessive repeat or an
    atomic group (3.11 on), the walk finds it; before, parsing refuses it outright."""
    for pattern, opcode in ((r"(?:a[b-c]++)?", "POSSESSIVE_REPEAT"), (r"x(?>y|z)", "ATOMIC_GROUP")):
        try:
            parsed = _parser.parse(pattern, 0)
        except re.error:
            continue  # Python 3.10: the syntax itself is refused
        assert opcode in _opcodes(parsed)
