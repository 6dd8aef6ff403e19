"""Reconciliation never gives one item another's contact, and it outlasts Qomon's search lag."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from qomon_async import CreateStatus, QomonClient, RetryPolicy
from qomon_async._create import lookup_schedule
from qomon_async.testing import (
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    FakeQomon,
    RawAnswer,
)

KEY = "claims-test-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=8)
JEANNE = {"firstname": "Jeanne", "surname": "Martin", "mail": "famille.martin@example.org"}
MARTIN = {"surname": "Martin", "mail": "famille.martin@example.org"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, seed=7) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, timeout=0.5, reconcile_lag=0
    ) as client:
        yield client


@pytest.mark.parametrize("dedupe", [True, False])
async def test_a_row_never_claims_the_contact_of_another_row(
    client: QomonClient, fake: FakeQomon, dedupe: bool
) -> None:
    # The second create fails with a 500 before anything is stored; the first row's contact
    # has the same mail and surname, and a first name the second row does not have.
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /contacts", nth=2)
    results = [
        r async for r in client.create_contacts([JEANNE, MARTIN], concurrency=1, dedupe=dedupe)
    ]
    assert [r.status for r in results] == [CreateStatus.CREATED, CreateStatus.CREATED]
    first, second = (r.contact for r in results)
    assert first is not None and second is not None
    assert first.id is not None and second.id is not None
    assert first.id != second.id
    assert len(fake.contacts) == 2
    assert fake.contacts[second.id].get("firstname") in (None, "")
    assert fake.contacts[first.id]["firstname"] == "Jeanne"
    assert not results[1].reconciled  # looked up, surely absent, sent again


async def test_the_married_name_tells_two_people_apart(
    client: QomonClient, fake: FakeQomon
) -> None:
    wife = {**MARTIN, "firstname": "Anne", "married_name": "Durand"}
    sister = {**MARTIN, "firstname": "Anne"}
    fake.inject(ErrorBeforeProcessing(status=502), route="POST /contacts", nth=2)
    results = [r async for r in client.create_contacts([wife, sister], concurrency=1, dedupe=False)]
    ids = {r.contact.id for r in results if r.contact is not None}
    assert len(ids) == 2 and len(fake.contacts) == 2


async def test_a_single_create_does_not_take_a_namesake_created_earlier(
    client: QomonClient, fake: FakeQomon
) -> None:
    await client.create_contact(JEANNE)
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /contacts", nth=2)
    contact = await client.create_contact(MARTIN)
    assert len(fake.contacts) == 2 and contact.firstname in (None, "")


async def test_twins_each_get_their_own_contact_under_faults(
    client: QomonClient, fake: FakeQomon
) -> None:
    twins = [dict(JEANNE) for _ in range(40)]
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /contacts", probability=0.3)
    fake.inject(ErrorAfterProcessing(status=502), route="POST /contacts", probability=0.2)
    results = [r async for r in client.create_contacts(twins, concurrency=4, dedupe=False)]
    created = [r for r in results if r.status is CreateStatus.CREATED]
    ids = [r.contact.id for r in created if r.contact is not None]
    assert len(ids) == len(set(ids)), "two items were given the same contact"
    unknown = sum(r.status is CreateStatus.UNKNOWN for r in results)
    assert len(created) + unknown == 40
    assert len(created) <= len(fake.contacts) <= len(created) + unknown


async def test_with_dedupe_one_family_under_faults_gets_one_contact_each_and_no_claims(
    client: QomonClient, fake: FakeQomon
) -> None:
    # One mail, forty first names: dedupe lets every row through, and each row's reconciliation
    # (after a 502 that stored it, or a 500 that did not) meets its relatives' contacts. The
    # names tell them apart: no claims are kept with dedupe, and none is needed.
    family = [{**MARTIN, "firstname": f"Enfant {i}"} for i in range(40)]
    fake.inject(ErrorAfterProcessing(status=502), route="POST /contacts", nth=3)  # one at least
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /contacts", probability=0.3)
    fake.inject(ErrorAfterProcessing(status=502), route="POST /contacts", probability=0.2)
    run = client.create_contacts(family, concurrency=4)
    results = [r async for r in run]
    assert run._claims is None
    created = [r for r in results if r.status is CreateStatus.CREATED]
    assert sum(r.reconciled for r in created) >= 1  # the faults did send rows to reconciliation
    for result in created:
        assert result.contact is not None
        assert fake.contacts[result.contact.id]["firstname"] == family[result.index]["firstname"]
    ids = [r.contact.id for r in created if r.contact is not None]
    assert len(ids) == len(set(ids)), "two items were given the same contact"
    unknown = sum(r.status is CreateStatus.UNKNOWN for r in results)
    assert len(created) + unknown == 40
    assert len(created) <= len(fake.contacts) <= len(created) + unknown


async def test_claims_are_kept_only_for_the_in_flight_window(
    client: QomonClient, fake: FakeQomon
) -> None:
    n = 1300
    run = client.create_contacts(
        ({"firstname": "P", "surname": str(i), "mail": f"p{i}@example.org"} for i in range(n)),
        concurrency=8,
        dedupe=False,
    )
    largest = 0
    done = 0
    async for result in run:
        assert result.ok
        done += 1
        largest = max(largest, len(run._claims))
    assert done == n
    # Claims are dropped once no item in flight can meet them: never one per item of the run.
    assert largest <= 1024 and len(run._claims) < 300


async def test_claims_are_dropped_as_time_passes_not_once_the_table_doubled(
    client: QomonClient, fake: FakeQomon
) -> None:
    # Qomon's clock 1000x: its 5 s of slack are 5 ms here, a few claims' worth. The table
    # follows that window all along the run (dropped each time a group of claims begins), where
    # dropping only when it reached 1,024 claims let it climb to that size again and again.
    n = 3000
    run = client.create_contacts(
        ({"firstname": "Q", "surname": str(i), "mail": f"q{i}@example.org"} for i in range(n)),
        concurrency=2,
        dedupe=False,
    )
    sizes = []
    async for result in run:
        assert result.ok
        sizes.append(len(run._claims))
    assert len(sizes) == n
    assert max(sizes) < 256
    assert run._claims.floor is not None  # claims were dropped, and the drop was told


def test_the_lookup_schedule_grows_and_covers_the_lag() -> None:
    waits = lookup_schedule(5.0)
    assert waits == pytest.approx((0.5, 1.0, 1.5, 2.0))
    assert sum(waits) == pytest.approx(5.0)
    assert list(waits) == sorted(waits)
    assert lookup_schedule(0) == (0.0, 0.0, 0.0, 0.0)


async def lagging_proxy(fake: FakeQomon, lag: float) -> web.AppRunner:
    """Qomon in front of a search index ``lag`` Qomon seconds behind: /search answers omit the
    contacts created less than ``lag`` ago."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.request(
            request.method,
            fake.base_url + request.path_qs,
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as answer:
            data = await answer.read()
            headers = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            }
            status = answer.status
        if request.path == "/search" and status == 200:
            document: dict[str, Any] = json.loads(data)
            horizon = fake.clock.utcnow() - dt.timedelta(seconds=lag)
            document["data"]["contacts"] = [
                c
                for c in document["data"]["contacts"]
                if dt.datetime.fromisoformat(c["CreatedAt"].replace("Z", "+00:00")) <= horizon
            ]
            data = json.dumps(document).encode()
        return web.Response(status=status, body=data, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)

    async def close_session(_app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize(("lag_covered", "contacts"), [(5.0, 1), (1.0, 2)])
async def test_the_lookups_outlast_a_lagging_search_index(
    lag_covered: float, contacts: int
) -> None:
    # Qomon stores the create, answers 500, and its search shows it only 2.5 s later. Covering
    # 5 s of lag (the default), the lookups find it; covering 1 s, they miss it and it is sent
    # again (the second contact shows what the schedule prevents). A slow clock (4x): under
    # load, the four lookups' own round trips must not outlast the lag they are meant to miss.
    async with FakeQomon(api_key=KEY, time_scale=4) as fake:
        runner = await lagging_proxy(fake, lag=2.5)
        try:
            port = runner.addresses[0][1]
            async with QomonClient(
                KEY,
                base_url=f"http://127.0.0.1:{port}",
                retry=FAST,
                reconcile_lag=lag_covered / fake.time_scale,  # real seconds
            ) as client:
                fake.inject(ErrorAfterProcessing(status=500), route="POST /contacts", nth=1)
                contact = await client.create_contact(JEANNE)
        finally:
            await runner.cleanup()
        assert len(fake.contacts) == contacts
        assert contact.id in fake.contacts
        assert client.stats.reconciled == (1 if contacts == 1 else 0)


async def test_qomon_s_clock_is_learned_from_confirmed_creates() -> None:
    # Qomon's clock an hour behind ours, far beyond the 120 s margin: once a create has been
    # confirmed, an ambiguous one is still found where Qomon's clock says it was stored.
    behind = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    async with FakeQomon(api_key=KEY, time_scale=1000, start_time=behind) as fake:
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0) as client:
            await client.create_contact(JEANNE)
            fake.inject(ErrorAfterProcessing(status=500), route="POST /contacts", nth=1)
            second = await client.create_contact({**MARTIN, "firstname": "Paul"})
        assert len(fake.contacts) == 2 and second.id in fake.contacts
        assert client.stats.reconciled == 1


async def test_an_absurd_created_at_is_not_taken_for_qomon_s_clock() -> None:
    # An answer dated 9999-12-31: learning that offset would put the next attempt's start, on
    # Qomon's clock, past the last representable date, and an ambiguous create would fail with
    # OverflowError after sending, unrecorded. Ignored, the ambiguous create is reconciled.
    hostile = {
        "status": "success",
        "data": {"contact": {"id": 424242, "CreatedAt": "9999-12-31T23:59:59.999999Z"}},
    }
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0) as client:
            fake.inject(RawAnswer(json.dumps(hostile)), route="POST /contacts", nth=1)
            await client.create_contact(JEANNE)
            fake.inject(ErrorAfterProcessing(status=504), route="POST /contacts", nth=1)
            second = await client.create_contact({**MARTIN, "firstname": "Paul"})
        assert len(fake.contacts) == 2 and second.id in fake.contacts
        assert client.stats.reconciled == 1


def test_claims_that_cannot_be_dropped_are_asked_about_again_only_once_doubled() -> None:
    # Qomon's clock unknown (no CreatedAt learned): nothing can be dropped, and the pool must
    # not scan its items in flight on every later claim (O(concurrency) per item).
    from qomon_async._claims import Claims  # noqa: PLC0415
    from qomon_async._models import Contact  # noqa: PLC0415

    claims = Claims()
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for number in range(1, 1025):
        claims.add(Contact(id=number, _created_at=when))
    assert claims.full()
    claims.keep_all()
    assert not claims.full() and len(claims) == 1024
    for number in range(1025, 2049):
        claims.add(Contact(id=number, _created_at=when))
    assert claims.full()  # asked again once doubled
