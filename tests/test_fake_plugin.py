"""The emulator outside the test's event loop: the background-thread mode, the pytest plugin's
fixtures, and the ``qomon-async fake-server`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _helpers import fake_server_process

from qomon_async._cli import main
from qomon_async.testing import DropAfterProcessing, FakeQomon


def call(
    base_url: str, path: str, key: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], Any]:
    """A blocking request with the standard library (no event loop at all)."""
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


# -- background thread -------------------------------------------------------------------


def test_sync_context_manager_serves_from_a_thread() -> None:
    with FakeQomon(api_key="k") as fake:
        status, _, body = call(fake.base_url, "/contacts", "k", {"data": {"contact": {}}})
        assert status == 200
        assert list(fake.contacts) == [body["data"]["contact"]["id"]]
        base_url = fake.base_url
    with pytest.raises(urllib.error.URLError):
        call(base_url, "/actions", "k")


def test_port_in_use_raises_in_the_caller() -> None:
    with FakeQomon() as first, pytest.raises(OSError):  # noqa: SIM117
        with FakeQomon(port=first.port or 0):
            pass


# -- the pytest plugin -------------------------------------------------------------------


def test_fixture_in_three_lines(fake_qomon: FakeQomon) -> None:
    status, _, _ = call(
        fake_qomon.base_url, "/contacts", fake_qomon.api_key, {"data": {"contact": {}}}
    )
    assert status == 200 and len(fake_qomon.contacts) == 1


async def test_fixture_from_an_async_test_with_faults(fake_qomon: FakeQomon) -> None:
    fake_qomon.inject(DropAfterProcessing(), route="POST /contacts", nth=1)
    headers = {"Authorization": f"Bearer {fake_qomon.api_key}"}
    async with aiohttp.ClientSession(fake_qomon.base_url, headers=headers) as http:
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await http.post("/contacts", json={"data": {"contact": {"firstname": "A"}}})
    assert len(fake_qomon.contacts) == 1


@pytest.mark.fake_qomon(api_key="marked", capacity=10)
def test_marker_sets_options(fake_qomon: FakeQomon) -> None:
    status, headers, _ = call(fake_qomon.base_url, "/actions", "marked")
    assert status == 200
    assert headers["X-Ratelimit-Limit"] == "burst:10;rate:10.0"


@pytest.mark.parametrize("fake_qomon", [{"time_scale": 50}], indirect=True)
def test_indirect_parametrization(fake_qomon: FakeQomon) -> None:
    assert fake_qomon.time_scale == 50


class TestOptionsFixtureOverride:
    @pytest.fixture
    def fake_qomon_options(self) -> dict[str, Any]:
        return {"rate_limit": False, "api_key": "from-options"}

    def test_override(self, fake_qomon: FakeQomon) -> None:
        status, headers, _ = call(fake_qomon.base_url, "/actions", "from-options")
        assert status == 200 and "X-Ratelimit-Limit" not in headers


def test_env_fixture(fake_qomon_env: FakeQomon) -> None:
    assert os.environ["QOMON_BASE_URL"] == fake_qomon_env.base_url
    assert os.environ["QOMON_API_KEY"] == fake_qomon_env.api_key


def test_plugin_is_available_to_an_installed_users_tests(tmp_path: Path) -> None:
    # A user's project: no conftest, no import of the plugin; the entry point provides it.
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import urllib.request

            def test_my_integration(fake_qomon):
                request = urllib.request.Request(
                    fake_qomon.base_url + "/actions",
                    headers={"Authorization": "Bearer " + fake_qomon.api_key},
                )
                assert urllib.request.urlopen(request).status == 200

            def test_a_predicate_that_raises(fake_qomon):
                from qomon_async.testing import DropBeforeProcessing

                fake_qomon.inject(DropBeforeProcessing(), when=lambda r: r.body["data"])
                request = urllib.request.Request(
                    fake_qomon.base_url + "/actions",
                    headers={"Authorization": "Bearer " + fake_qomon.api_key},
                )
                assert urllib.request.urlopen(request).status == 200
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The second test's own assertions pass; its predicate's TypeError fails it at teardown.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout, result.stdout
    assert "FaultPredicateError" in result.stdout and "GET /actions" in result.stdout


# -- the command line --------------------------------------------------------------------


def test_cli_fake_server_serves_until_terminated() -> None:
    with fake_server_process("--api-key", "cli-key", "--time-scale", "10") as lines:
        base_url = lines["QOMON_BASE_URL"]
        assert base_url.startswith("http://127.0.0.1:")
        assert lines["QOMON_API_KEY"] == "cli-key"
        status, headers, _ = call(base_url, "/v1/forms/type/consent", "cli-key")
        assert status == 200
        assert headers["X-Ratelimit-Limit"] == "burst:100;rate:100.0"


def test_cli_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        main(["fake-server", "--help"])
    assert "--no-rate-limit" in capsys.readouterr().out
