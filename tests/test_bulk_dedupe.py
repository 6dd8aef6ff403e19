"""Input de-duplication: the key it compares, the compact table, the spill to disk."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qomon_async import CreateStatus, DuplicateInputError, QomonClient, RetryPolicy
from qomon_async._dedupe import SeenTable, duplicate_key
from qomon_async.testing import FakeQomon

KEY = "dedupe-test-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=4)


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0) as client:
        yield client


FAMILY = [
    {"firstname": "Jeanne", "surname": "Martin", "mail": "famille.martin@example.org"},
    {"firstname": "Paul", "surname": "Martin", "mail": "famille.martin@example.org"},
    {"firstname": "JEANNE ", "surname": "martin", "mail": "Famille.Martin@example.org"},
]


async def test_by_default_mail_and_names_identify_a_person(
    client: QomonClient, fake: FakeQomon
) -> None:
    results = [r async for r in client.create_contacts(FAMILY, ordered=True)]
    assert [r.status for r in results] == [
        CreateStatus.CREATED,
        CreateStatus.CREATED,
        CreateStatus.SKIPPED,
    ]
    error = results[2].error
    assert isinstance(error, DuplicateInputError) and error.first_index == 0
    assert "item 2 has the same mail and names as item 0" in str(error)
    assert len(fake.contacts) == 2


async def test_dedupe_key_mail_stores_one_contact_per_mail(
    client: QomonClient, fake: FakeQomon
) -> None:
    results = [r async for r in client.create_contacts(FAMILY, ordered=True, dedupe_key="mail")]
    assert [r.status for r in results] == [CreateStatus.CREATED] + [CreateStatus.SKIPPED] * 2
    for result in results[1:]:
        assert isinstance(result.error, DuplicateInputError)
        assert result.error.first_index == 0
        assert "the same mail as item 0" in str(result.error)
    assert len(fake.contacts) == 1


async def test_upserts_take_the_dedupe_key_too(client: QomonClient, fake: FakeQomon) -> None:
    results = [r async for r in client.upsert_contacts(FAMILY, ordered=True, dedupe_key="mail")]
    assert [r.status for r in results] == [CreateStatus.CREATED] + [CreateStatus.SKIPPED] * 2
    assert len([r for r in fake.requests if r.path == "/contacts/upsert"]) == 1


def rows(n: int) -> list[dict[str, Any]]:
    """n rows, some of them repeats of an earlier row (in another case and spacing)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        j = i // 3 if i % 3 == 2 else i
        out.append({"firstname": f"P{j}", "surname": "S", "mail": f" P{j}@Example.org"})
    return out


async def test_spilled_to_disk_the_outcomes_are_the_same(client: QomonClient) -> None:
    def outcome(r: Any) -> tuple[int, str, int | None]:
        first = r.error.first_index if isinstance(r.error, DuplicateInputError) else None
        return r.index, r.status.value, first

    data = rows(90)
    in_memory = sorted(
        [outcome(r) async for r in client.create_contacts(data, dedupe=True, concurrency=4)]
    )
    # A new mail domain per run, so that the second run creates as the first one did.
    again = [{**row, "mail": row["mail"].replace("Example", "Other")} for row in data]
    run = client.create_contacts(again, dedupe_spill=10, concurrency=4)
    on_disk = sorted([outcome(r) async for r in run])
    assert run._seen is not None and run._seen.spilled
    assert on_disk == in_memory
    distinct = {row["mail"].strip().lower() for row in data}
    skipped = sum(1 for _, status, _ in on_disk if status == "skipped")
    assert skipped == len(data) - len(distinct) > 10


def test_the_table_finds_every_repeat_and_its_first_index() -> None:
    table = SeenTable()
    digests = [duplicate_key({"mail": f"m{i}@example.org"}, "mail") for i in range(20_000)]
    for index, digest in enumerate(digests):
        assert digest is not None
        assert table.first(digest, index) is None
    for index, digest in enumerate(digests[::7]):
        assert digest is not None
        assert table.first(digest, 10**6 + index) == 7 * index
    assert len(table) == 20_000
    # An index that does not fit 4 bytes is kept as "an earlier item".
    big = duplicate_key({"mail": "late@example.org"}, "mail")
    assert big is not None
    assert table.first(big, 2**33) is None and table.first(big, 2**33 + 1) == -1


def test_the_table_costs_at_most_40_bytes_per_distinct_item() -> None:
    n = 60_000
    digests = [duplicate_key({"mail": f"m{i}@example.org"}, "mail") for i in range(n)]
    tracemalloc.start()
    try:
        table = SeenTable()
        for index, digest in enumerate(digests):
            assert digest is not None
            table.first(digest, index)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The peak includes a segment's growth (old and new arrays at once).
    assert peak / n <= 40, f"{peak / n:.1f} bytes per item"
    assert table.nbytes / n <= 28.5


def test_a_dedupe_key_is_checked() -> None:
    client = QomonClient("k", base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="dedupe_key"):
        client.create_contacts([], dedupe_key="names")  # type: ignore[arg-type]
