"""Every code block of the README and of the docs site runs, as a user would copy it.

Conventions (also in docs/development.md):

* A ```` ```python ```` block is a complete program. It runs in a fresh interpreter, in a
  temporary directory, with ``QOMON_API_KEY`` and ``QOMON_BASE_URL`` pointing at an emulator
  (``qomon-async fake-server``) started for the docs tests. It must exit 0 and print nothing on
  stderr that looks like a warning, an unclosed session or a traceback (``-W error`` turns
  ResourceWarnings into errors). When the next block is a ```` ```text ```` block introduced by
  a line ending in "prints:" or "prints something like:" (any case), or that follows it
  directly, the program's stdout must match it; ``...`` in the expected text matches anything
  on its line or any run of lines, and ISO timestamps match any timestamp. A
  ``print(...)  # value`` line documents its output too: ``value`` (up to a colon) must appear
  in the printed lines, in order. A block defining ``test_`` functions is a pytest module: it
  runs under pytest, with the emulator's pytest plugin.
* A ```` ```console ```` block is a shell session: each ``$ command`` line runs (only
  ``qomon-async`` and ``python`` commands, optionally after ``VAR=value`` assignments), and the
  lines after it until the next ``$`` are its expected output, matched as above.
  ``qomon-async fake-server`` is started, read until it has printed the expected lines, and
  stopped.
* ```` ```sh ```` blocks are installation and development commands for the reader's own shell;
  they are not run here (CI runs the README's two commands itself).
* A block of any language with a ``title="NAME"`` (a file name) is written to ``NAME`` in the
  page's working directory, which every runnable block of that page shares, in page order: a
  page can show an input file and a mapping, then run the import on them.
* A block made only of ``--8<-- "FILE:SECTION"`` lines includes a section of a file of the
  project (``examples/``, run by their own tests): the section must exist in that file.
* ``redis://localhost:6379/0`` in a block is replaced by the URL of a ``redis-server`` that the
  tests start, and a block that names ``QOMON_REDIS_URL`` runs with it set to that URL.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import qomon_async
import qomon_async.redis
import qomon_async.testing

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=indent)```\s*$",
    re.S | re.M,
)
INCLUDE = re.compile(r'--8<-- "(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"')
TITLE = re.compile(r'title="(?P<name>[^"/]+)"')
PRINTS = re.compile(r"prints( something like)?:\s*$", re.I)
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d\d:\d\d)")
DOCUMENTED_PRINT = re.compile(r"\s*print\(.*\)\s+# (.+)$")
SNIPPET_TIMEOUT = 120
SHARED_NOTES = ("design.md", "qomon-api.md", "DEVELOPERS.md", "../shared", "§")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    expected: str | None  # the "prints:" block that follows, if any
    files: tuple[tuple[str, str], ...] = ()  # (name, content) of the titled blocks before it

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> Iterator[Block]:
    text = page.read_text(encoding="utf-8")
    found = list(FENCE.finditer(text))
    files: list[tuple[str, str]] = []
    for i, match in enumerate(found):
        lang = match["lang"].lower()
        code = _dedent(match["code"], len(match["indent"]))
        title = TITLE.search(match["info"])
        if title is not None:
            files.append((title["name"], code))
            continue
        if lang not in ("python", "py", "console"):
            continue
        if all(INCLUDE.fullmatch(line) for line in code.strip().splitlines()):
            lang = "include"
        expected = None
        if i + 1 < len(found) and found[i + 1]["lang"].lower() == "text":
            between = text[match.end() : found[i + 1].start()].strip()
            if (not between or PRINTS.search(between)) and "```" not in between:
                expected = _dedent(found[i + 1]["code"], len(found[i + 1]["indent"]))
        line = text.count("\n", 0, match.start()) + 1
        kind = lang if lang in ("console", "include") else "python"
        yield Block(page, line, kind, code, expected, tuple(files))


def _dedent(code: str, indent: int) -> str:
    return "\n".join(line[indent:] for line in code.splitlines()) + "\n"


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` fits ``expected``, where ``...`` stands for anything."""
    expected, actual = STAMP.sub("<time>", expected), STAMP.sub("<time>", actual)
    pattern = ".*".join(re.escape(part.strip()) for part in expected.strip().split("..."))
    pattern = re.sub(r"(\\ )+", r"\\s+", pattern)  # runs of spaces: any whitespace
    pattern = re.sub(r"(\\\n)+", r"\\s+", pattern)
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An emulator in its own process, and the environment a reader would have set."""
    server = subprocess.Popen(
        [sys.executable, "-m", "qomon_async._cli", "fake-server", "--port", "0",
         "--api-key", "docs-key", "--time-scale", "50"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    env = dict(os.environ)
    for _ in range(2):
        name, _, value = server.stdout.readline().strip().partition("=")
        env[name] = value
    assert env.get("QOMON_BASE_URL", "").startswith("http://127.0.0.1:"), env.get("QOMON_BASE_URL")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "error::ResourceWarning"
    env["COLUMNS"] = "100"
    env.pop("QOMON_REDIS_URL", None)
    try:
        yield env
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    return {}


def _workdir(block: Block, page_dirs: dict[Path, Path], factory: pytest.TempPathFactory) -> Path:
    """The page's shared working directory, with the files its titled blocks show."""
    if block.page not in page_dirs:
        page_dirs[block.page] = factory.mktemp(block.page.stem)
    where = page_dirs[block.page]
    for name, content in block.files:
        (where / name).write_text(content, encoding="utf-8")
    return where


def _env_for(code: str, docs_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    env = dict(docs_env)
    if "QOMON_REDIS_URL" in code:
        env["QOMON_REDIS_URL"] = request.getfixturevalue("redis_url")
    return env


def _substitute(code: str, request: pytest.FixtureRequest) -> str:
    if "redis://localhost:6379/0" in code:
        redis_url: str = request.getfixturevalue("redis_url")
        code = code.replace("redis://localhost:6379/0", redis_url)
    return code


def _check_stderr(block: Block, stderr: str) -> None:
    for sign in ("Traceback", "Unclosed", "Warning:", "was never awaited"):
        assert sign not in stderr, f"{block.id} wrote to stderr:\n{stderr}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs(
    block: Block,
    docs_env: dict[str, str],
    page_dirs: dict[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    tmp_path = _workdir(block, page_dirs, tmp_path_factory)
    code = _substitute(block.code, request)
    env = _env_for(code, docs_env, request)
    if re.search(r"^def test_", code, re.M):  # a pytest module, as a reader would save it
        module = tmp_path / f"test_snippet_{block.line}.py"
        module.write_text(code, encoding="utf-8")
        argv = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::ResourceWarning"]
        argv.append(module.name)
    else:
        argv = ["-W", "error::ResourceWarning", "-c", code]
    proc = subprocess.run(
        [sys.executable, *argv], check=False,
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stdout}\n{proc.stderr}"
    _check_stderr(block, proc.stderr)
    printed = proc.stdout.splitlines()
    position = 0
    for line in code.splitlines():
        documented = DOCUMENTED_PRINT.match(line)
        if documented is None:
            continue
        value = documented.group(1).split(":")[0].strip()
        while position < len(printed) and value not in printed[position]:
            position += 1
        assert position < len(printed), f"{block.id}: {value!r} not printed in {printed}"
        position += 1
    if block.expected is not None:
        assert matches(block.expected, proc.stdout), (
            f"{block.id} printed:\n{proc.stdout}\nexpected:\n{block.expected}"
        )


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "include"], ids=lambda b: b.id)
def test_included_sections_exist(block: Block) -> None:
    for line in block.code.strip().splitlines():
        include = INCLUDE.fullmatch(line)
        assert include is not None
        text = (ROOT / include["file"]).read_text(encoding="utf-8")
        if include["section"]:
            for edge in ("start", "end"):
                assert f"--8<-- [{edge}:{include['section']}]" in text, (block.id, line)


def _commands(block: Block) -> Iterator[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    command: str | None = None
    output: list[str] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, "\n".join(output)
            command, output = line[2:], []
        elif command is not None:
            output.append(line)
    if command is not None:
        yield command, "\n".join(output)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "console"], ids=lambda b: b.id)
def test_console_block_runs(
    block: Block,
    docs_env: dict[str, str],
    page_dirs: dict[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    tmp_path = _workdir(block, page_dirs, tmp_path_factory)
    for command, expected in _commands(block):
        words = shlex.split(_substitute(command, request))
        env = _env_for(command, docs_env, request)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        assert words and words[0] in ("qomon-async", "python"), f"{block.id}: cannot run {command}"
        if words[0] == "qomon-async":
            argv = [sys.executable, "-m", "qomon_async._cli", *words[1:]]
        else:
            argv = [sys.executable, *words[1:]]
        if words[1:2] == ["fake-server"]:
            actual = _first_lines(argv, env, tmp_path, len(expected.strip().splitlines()))
        else:
            proc = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                timeout=SNIPPET_TIMEOUT,
            )  # fmt: skip
            actual = proc.stdout
            _check_stderr(block, proc.stderr)
        assert matches(expected, actual), (
            f"{block.id}: `{command}` printed:\n{actual}\nexpected:\n{expected}"
        )


def _first_lines(argv: list[str], env: dict[str, str], cwd: Path, count: int) -> str:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        return "".join(proc.stdout.readline() for _ in range(count))
    finally:
        proc.terminate()
        proc.wait(10)


def test_every_page_has_tested_blocks_or_none_to_test() -> None:
    """The collector sees the blocks (a fence it cannot parse would silently skip a snippet)."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        runnable = len(re.findall(r"^ *```(?:python|py|console)\b(?![^\n]*title=)", text, re.M))
        assert runnable == sum(1 for b in BLOCKS if b.page == page), page


def test_matches_wildcards() -> None:
    assert matches("created 3\n...\ndone", "created 3\nx\ny\ndone")
    assert matches("id ...", "id 42")
    assert not matches("created 3", "created 4")


def test_no_reference_to_unshipped_notes() -> None:
    """The package and its docs cite only what ships (the site, Qomon's public docs by URL)."""
    files = [*PAGES, ROOT / "mkdocs.yml", *(ROOT / "qomon_async").rglob("*.py")]
    files += [*(ROOT / "examples").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.md")]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        if path.is_file()
        for name in SHARED_NOTES
        if name in path.read_text(encoding="utf-8")
    ]
    assert not offenders, "\n".join(offenders)


def test_reference_covers_the_public_names() -> None:
    """Every public name of the package and of its emulator has an API reference entry."""
    reference = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs/reference").glob("*.md")
    )
    missing = [
        f"{module.__name__}.{name}"
        for module in (qomon_async, qomon_async.testing, qomon_async.redis)
        for name in module.__all__
        if not name.startswith("__") and f"::: {module.__name__}.{name}\n" not in reference
    ]
    assert not missing, missing
