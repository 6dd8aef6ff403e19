"""The single entry point for the project's jobs: ``nox -s tests lint typecheck docs bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PACKAGE = "qomon_async"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the local emulator (real HTTP on 127.0.0.1)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests (decoders, CSV/JSON Lines readers, mapping files) with the long
    hypothesis profile; the suite runs them with a short one."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/test_fuzz_decode.py",
        "tests/test_importer_fuzz.py",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "fuzz"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff, on the package, the tests, the examples and the benchmarks."""
    session.install("ruff>=0.5")
    paths = [PACKAGE, "tests", "examples", "benchmarks", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the typing tests of tests/typing/, examples and benchmarks.

    tests/typing/ is never run: ``*_ok.py`` and ``api.py`` are code a typed caller writes, which
    must type-check; ``*_fail.py`` are lines mypy must refuse, each silenced by the exact
    ``# type: ignore[code]``: with ``--warn-unused-ignores`` a line that stopped failing fails
    the session.
    """
    session.install("-e", ".[test,bench]", "mypy>=1.10", "types-psutil")
    session.run("mypy", "--strict", PACKAGE)
    session.run("mypy", "--strict", "--warn-unused-ignores", "tests/typing/")
    session.run("mypy", "--strict", "examples")
    session.run("mypy", "--strict", "benchmarks")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs, Material, mkdocstrings) with ``--strict``: a broken
    link or reference fails. ``nox -s docs -- serve`` serves it locally instead."""
    session.install("-e", ".[docs,redis]")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks of benchmarks/ (``nox -s bench -- --quick`` for the short run)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Import the bundled sample into the local emulator, with the progress bar."""
    session.install("-e", ".")
    session.run("qomon-async", "demo", *session.posargs)
