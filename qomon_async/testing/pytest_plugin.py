"""pytest plugin: the ``fake_qomon`` fixture, a running :class:`FakeQomon` per test.

Installed with qomon_async (entry point ``pytest11``), so a project that depends on it can
test its own integration without any setup::

    def test_signup_creates_contact(fake_qomon):
        signup("jeanne@example.org", api_key=fake_qomon.api_key, base_url=fake_qomon.base_url)
        assert [c["mail"] for c in fake_qomon.contacts.values()] == ["jeanne@example.org"]

The emulator runs on a background thread with its own event loop, so the fixture works with
any async test runner, or none. Options, from the weakest to the strongest:

- override the ``fake_qomon_options`` fixture (a dict of ``FakeQomon`` arguments) in a
  ``conftest.py`` or a test module;
- mark a test with ``@pytest.mark.fake_qomon(time_scale=100, capacity=20)``;
- parametrize indirectly: ``@pytest.mark.parametrize("fake_qomon", [{...}], indirect=True)``.

``fake_qomon_env`` does the same and also sets ``QOMON_API_KEY`` and ``QOMON_BASE_URL``, for
code that reads its configuration from the environment.

A fault predicate that raised during the test (``FakeQomon.errors``) fails the test at
teardown with that error (``raise_errors=False`` in the options keeps it quiet).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._app import FakeQomon

__all__ = ["fake_qomon", "fake_qomon_env", "fake_qomon_options"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_qomon(**options): FakeQomon arguments for the fake_qomon fixture"
    )


@pytest.fixture
def fake_qomon_options() -> dict[str, Any]:
    """Arguments for ``FakeQomon`` used by the ``fake_qomon`` fixture; override to change."""
    return {}


@pytest.fixture
def fake_qomon(
    request: pytest.FixtureRequest, fake_qomon_options: dict[str, Any]
) -> Iterator[FakeQomon]:
    """A started ``FakeQomon`` (on a background thread), stopped after the test."""
    options = dict(fake_qomon_options)
    marker = request.node.get_closest_marker("fake_qomon")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    with FakeQomon(**options) as fake:
        yield fake


@pytest.fixture
def fake_qomon_env(fake_qomon: FakeQomon, monkeypatch: pytest.MonkeyPatch) -> FakeQomon:
    """``fake_qomon``, with ``QOMON_API_KEY`` and ``QOMON_BASE_URL`` pointing at it."""
    monkeypatch.setenv("QOMON_API_KEY", fake_qomon.api_key)
    monkeypatch.setenv("QOMON_BASE_URL", fake_qomon.base_url)
    return fake_qomon
