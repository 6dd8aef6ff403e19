"""QomonClient against the emulator over real HTTP on 127.0.0.1: every endpoint, every error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from qomon_async import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Condition,
    ContactValidationError,
    ContactWrite,
    NotFoundError,
    PermissionDeniedError,
    QomonClient,
    QomonError,
    Query,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    UnprocessableEntityError,
    UpsertContact,
    _protocol,
)
from qomon_async._retry import retry_wait
from qomon_async.testing import (
    DropBeforeProcessing,
    ErrorBeforeProcessing,
    FakeQomon,
    NonJsonBody,
    RateLimited,
    TruncatedBody,
)

KEY = "sk-test-5ecret-key-do-not-leak"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005)


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, upsert_delay=2.0) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_delay=0) as client:
        yield client


async def test_create_get_replace_update_delete(client: QomonClient, fake: FakeQomon) -> None:
    created = await client.create_contact(
        {
            "firstname": "Jeanne",
            "surname": "Dupont",
            "mail": "jeanne@example.org",
            "address": {"city": "Paris", "postalcode": "01000", "street": "rue de la Paix"},
            "tags": [{"name": "vip"}],
        }
    )
    assert isinstance(created.id, int) and created.id in fake.contacts
    assert created.address is not None and created.address.postalcode == "01000"
    assert [t.name for t in created.tags] == ["vip"]

    got = await client.get_contact(created.id)
    assert (got.id, got.firstname, got.mail) == (created.id, "Jeanne", "jeanne@example.org")

    # update_contact keeps what it does not change, address merged key by key
    updated = await client.update_contact(
        created.id, {"mobile": "0600000000", "address": {"city": "Lyon"}}
    )
    assert updated.mobile == "0600000000" and updated.firstname == "Jeanne"
    assert updated.address is not None and updated.address.city == "Lyon"
    assert updated.address.street == "rue de la Paix"
    assert [t.name for t in updated.tags] == ["vip"]

    # replace_contact is a full replace: what is left out is cleared
    replaced = await client.replace_contact(
        created.id, ContactWrite(firstname="Jeanne", mail="jeanne@example.org")
    )
    assert replaced.mobile in (None, "")
    assert replaced.address is None or not replaced.address.city
    assert replaced.tags == []
    assert fake.contacts[created.id].get("mobile") in (None, "")

    await client.delete_contact(created.id)
    assert created.id not in fake.contacts
    with pytest.raises(NotFoundError) as info:
        await client.get_contact(created.id)
    assert info.value.status_code == 404
    with pytest.raises(NotFoundError):
        await client.delete_contact(created.id)


async def test_search_pages_dedupes_and_counts(client: QomonClient, fake: FakeQomon) -> None:
    for i in range(25):
        fake.add_contact(
            {
                "firstname": f"P{i:02d}",
                "surname": "Martin",
                "mail": f"p{i}@example.org",
                "address": {"city": "Lyon" if i % 2 else "Lyonnais-sur-Mer"},
            }
        )
    fake.add_contact({"firstname": "Other", "surname": "Durand", "mail": "o@example.org"})
    everyone = [c async for c in client.search_contacts(per_page=10)]
    assert len(everyone) == 26 and len({c.id for c in everyone}) == 26
    searches = [r for r in fake.requests if r.path == "/search"]
    assert len(searches) == 3  # 10 + 10 + 6: stops on the short page
    martins = [
        c
        async for c in client.search_contacts(
            Query.where(Condition("surname", "eql", "martin")),
            per_page=7,
            sort_attr="firstname",
            sort_asc=True,
        )
    ]
    assert [c.firstname for c in martins] == [f"P{i:02d}" for i in range(25)]
    exact = [
        c
        async for c in client.search_contacts(
            Query.where(Condition("mail", "eql:strictdata", "p3@example.org"))
        )
    ]
    assert [c.mail for c in exact] == ["p3@example.org"]
    assert await client.count_contacts() == 26
    assert await client.count_contacts(Query.where(Condition("surname", "eql", "Durand"))) == 1
    assert [
        c
        async for c in client.search_contacts(
            Query.where(Condition("mail", "eql:strictdata", "nobody@x.org"))
        )
    ] == []


async def test_upsert_is_applied_later(client: QomonClient, fake: FakeQomon) -> None:
    await client.upsert_contact(
        UpsertContact(firstname="Ana", surname="Silva", mail="ana@example.org")
    )
    assert fake.upserts and fake.upserts[0].outcome == "pending"
    await fake.wait_for_upserts()
    assert [c["mail"] for c in fake.contacts.values()] == ["ana@example.org"]
    await client.upsert_contact(
        {"firstname": "Ana", "surname": "Silva", "mail": "ana@example.org", "mobile": "0611111111"}
    )
    await fake.wait_for_upserts()
    (stored,) = fake.contacts.values()
    assert stored["mobile"] == "0611111111"


async def test_forms_and_actions(client: QomonClient, fake: FakeQomon) -> None:
    for form_type in (
        "consent",
        "level_of_support",
        "presence_status",
        "custom_fields",
        "survey",
        "tasks",
    ):
        forms = await client.list_forms(form_type)
        assert forms, form_type
        assert all(f.id is not None and f.refvalues is not None for f in forms)
    consent = (await client.list_forms("consent"))[0]
    assert consent.id is not None
    same = await client.get_form(consent.id)
    assert same.label == consent.label and len(same.refvalues or []) == len(consent.refvalues or [])
    actions = await client.list_actions()
    assert actions and actions[0].action is not None and actions[0].action.name


async def test_forms_fall_back_to_the_deprecated_route(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(ErrorBeforeProcessing(status=404), route="GET /v1/forms/type/{type}", times=1)
    forms = await client.list_forms("consent")
    assert forms
    assert [r.path for r in fake.requests][-2:] == ["/v1/forms/type/consent", "/forms/consent"]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (500, ServerError),
        (502, ServerError),
    ],
)
async def test_every_error_status(
    client: QomonClient, fake: FakeQomon, status: int, cls: type[QomonError]
) -> None:
    fake.inject(ErrorBeforeProcessing(status=status), route="POST /kpi")
    with pytest.raises(cls) as info:
        await client.count_contacts(retry=RetryPolicy.disabled())
    assert getattr(info.value, "status_code", None) == status
    assert info.value.problem is not None  # type: ignore[attr-defined]


async def test_server_validation_error_names_the_field(client: QomonClient) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        await client.create_contact(
            {"firstname": "X", "formdatas": [{"form_id": 999999, "form_ref_id": 1}]}
        )
    assert info.value.errors and info.value.errors[0].location
    assert "formdatas" in (info.value.errors[0].location or "")


async def test_local_validation_sends_nothing(client: QomonClient, fake: FakeQomon) -> None:
    with pytest.raises(ContactValidationError) as info:
        await client.create_contact({"firstname": "X", "mail": "not an email"})
    assert info.value.location == "mail"
    assert fake.requests == []


async def test_wrong_key_is_401(fake: FakeQomon) -> None:
    async with QomonClient("wrong-key", base_url=fake.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.count_contacts()
    assert info.value.status_code == 401 and "wrong-key" not in str(info.value)


async def test_rate_limit_error_carries_retry_after(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(RateLimited(retry_after=3), route="POST /kpi")
    with pytest.raises(RateLimitError) as info:
        await client.count_contacts(retry=RetryPolicy.disabled())
    assert info.value.retry_after == pytest.approx(3 / 1000)


async def test_idempotent_calls_retry_5xx_and_dropped_connections(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /kpi", nth=1)
    fake.inject(DropBeforeProcessing(), route="POST /kpi", nth=2)
    fake.inject(NonJsonBody(status=502), route="POST /kpi", nth=3)
    assert await client.count_contacts() == 0
    assert client.stats.retries == 3


async def test_no_transport_exception_leaks(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url, retry=RetryPolicy.disabled()) as client:
        # POST: aiohttp itself re-sends an idempotent GET once on a dropped keep-alive connection
        fake.inject(DropBeforeProcessing(), route="POST /kpi", times=1)
        with pytest.raises(APIConnectionError) as dropped:
            await client.count_contacts()
        assert dropped.value.request_sent is True
        fake.inject(TruncatedBody(), route="POST /kpi", times=1)
        with pytest.raises(QomonError) as info:
            await client.count_contacts()
        assert not isinstance(info.value, aiohttp.ClientError)
        fake.inject(NonJsonBody(status=200, after_processing=True), route="GET /actions", times=1)
        with pytest.raises(ResponseDecodeError):
            await client.list_actions()
    async with QomonClient(
        KEY, base_url="http://127.0.0.1:9", retry=RetryPolicy.disabled()
    ) as client:
        with pytest.raises(APIConnectionError) as refused:
            await client.list_actions()
        assert refused.value.request_sent is False


async def test_the_key_never_shows(fake: FakeQomon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /kpi", times=2)
    fake.inject(RateLimited(retry_after=1), route="POST /kpi", nth=3)
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
        assert KEY not in repr(client) and KEY not in str(vars(client))
        assert await client.count_contacts() == 0
        fake.revoke()
        with pytest.raises(AuthenticationError) as info:
            await client.count_contacts()
    assert KEY not in str(info.value) and KEY not in repr(info.value) and KEY not in info.value.text
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)


def test_plain_http_is_refused_except_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="https is required"):
        QomonClient(KEY, base_url="http://incoming.qomon.app")
    for url in (
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:2",
        "https://incoming-us.qomon.app",
    ):
        assert QomonClient(KEY, base_url=url).base_url == url
    monkeypatch.setenv("QOMON_API_KEY", KEY)
    monkeypatch.delenv("QOMON_BASE_URL", raising=False)
    assert QomonClient().base_url == "https://incoming.qomon.app"
    monkeypatch.setenv("QOMON_BASE_URL", "https://incoming-us.qomon.app/")
    assert QomonClient().base_url == "https://incoming-us.qomon.app"
    monkeypatch.delenv("QOMON_API_KEY")
    with pytest.raises(ValueError, match="QOMON_API_KEY"):
        QomonClient()


async def test_a_session_handed_in_is_not_closed(fake: FakeQomon) -> None:
    async with aiohttp.ClientSession() as session:
        async with QomonClient(KEY, base_url=fake.base_url, session=session) as client:
            assert await client.count_contacts() == 0
        assert not session.closed
        user_agents = {r.path for r in fake.requests}
        assert user_agents == {"/kpi"}
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        await client.count_contacts()
        session = client._session
    assert session is not None and session.closed


async def test_user_agent_is_explicit(fake: FakeQomon) -> None:
    seen: list[str] = []
    fake.inject(
        ErrorBeforeProcessing(status=503),
        when=lambda info: seen.append(info.headers.get("User-Agent", "")) or False,
    )
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        await client.count_contacts()
    assert seen and seen[0].startswith("qomon-async/")


async def test_the_key_is_not_in_a_traceback(fake: FakeQomon) -> None:
    fake.inject(DropBeforeProcessing(), route="POST /kpi")
    async with QomonClient(KEY, base_url=fake.base_url, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.count_contacts()
    exc: BaseException | None = info.value
    while exc is not None:  # every exception of the chain, every frame, every local
        tb = exc.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                assert KEY not in repr(value), (tb.tb_frame.f_code.co_name, name)
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__


def test_a_503_retry_after_is_waited_exactly() -> None:
    err = _protocol.status_error(503, b"", method="GET", path="/x", retry_after=7.0)
    assert isinstance(err, ServerError) and err.retry_after == 7.0
    assert retry_wait(RetryPolicy(), err, 3) == 7.0
    no_hint = _protocol.status_error(503, b"", method="GET", path="/x")
    assert 0 <= retry_wait(RetryPolicy(base_delay=1, max_delay=2), no_hint, 3) <= 2
