"""One truth for a contact: the rules of ``_validation``, and the same verdicts through
``create_contact``, ``create_contacts`` and ``qomon-async import`` (the console script, over
real HTTP to the emulator)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from qomon_async import (
    ContactDict,
    ContactValidationError,
    ContactWrite,
    CreateStatus,
    QomonClient,
)
from qomon_async._validation import (
    FieldError,
    check_mail,
    normalise_birthdate,
    normalise_tags,
    suggest,
    validate_contact,
)
from qomon_async.testing import FakeQomon, Latency, RequestInfo

# A fault that never strikes: its predicate only logs the request bodies.
_NEVER = Latency(0.0)
KEY = "sk-test-validation-5b1d"
SCRIPT = str(Path(sys.executable).with_name("qomon-async"))

GOOD_MAILS = [
    "jeanne@example.org",
    "  jeanne.dupont+tag@mail.example.fr ",
    "élise@exemple.fr",
    "o'brien@example.ie",
    "a@b-c.org",
    "x_y{z}@sub.domain.example.com",
]
BAD_MAILS = [
    ";@x.org",
    "a@-b.org",
    "a@b-.org",
    "a@b..org",
    "a@b",
    "jean dupont@example.org",
    "a.@b.org",
    ".a@b.org",
    "a..b@example.org",
    "@example.org",
    "a@@b.org",
    "a@b.123",
    "a@b_c.org",
    "a(b)@example.org",
]


# -- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mail", GOOD_MAILS)
def test_good_mails(mail: str) -> None:
    assert check_mail(mail) == mail.strip()


@pytest.mark.parametrize("mail", BAD_MAILS)
def test_bad_mails(mail: str) -> None:
    with pytest.raises(FieldError, match="not an email address"):
        check_mail(mail)


def test_a_misspelled_key_names_the_closest_field() -> None:
    with pytest.raises(ContactValidationError) as info:
        validate_contact({"firstnme": "Typo", "mail": "t@example.org"})
    assert info.value.location == "firstnme"
    assert "did you mean `firstname`?" in str(info.value)
    with pytest.raises(ContactValidationError) as info:
        validate_contact({"address": {"postcode": "69001"}})
    assert info.value.location == "address.postcode"
    assert "did you mean `postalcode`?" in str(info.value)
    # Nothing close: no suggestion, still refused.
    with pytest.raises(ContactValidationError) as info:
        validate_contact({"zzzzzz": 1})
    assert str(info.value).startswith("unknown contact field 'zzzzzz' (nothing was sent")


def test_upsert_keys_are_their_own() -> None:
    assert validate_contact({"id": 3, "consents": []}, kind="upsert")["id"] == 3
    with pytest.raises(ContactValidationError) as info:
        validate_contact({"formdatas": []}, kind="upsert")
    assert info.value.location == "formdatas"


def test_non_strict_passes_unknown_keys_and_warns_once_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="qomon_async")
    for _ in range(3):
        out = validate_contact(
            {"firstname": "A", "new_qomon_field": 1, "address": {"district": "7e"}}, strict=False
        )
        assert out["new_qomon_field"] == 1 and out["address"] == {"district": "7e"}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("'new_qomon_field'" in line for line in lines) == 1
    assert sum("'address.district'" in line for line in lines) == 1


def test_tags_as_strings() -> None:
    assert normalise_tags("vip; bénévole;;vip") == [{"name": "vip"}, {"name": "bénévole"}]
    assert normalise_tags(["vip", {"name": "x"}]) == [{"name": "vip"}, {"name": "x"}]
    with pytest.raises(FieldError):
        normalise_tags(5)
    with pytest.raises(FieldError):
        normalise_tags([5])


def test_dates() -> None:
    today = dt.date(2026, 1, 1)
    for value in ("1980-03-05", "05/03/1980", "1980-03-05T00:00:00Z", dt.date(1980, 3, 5)):
        assert normalise_birthdate(value, today=today) == "1980-03-05T00:00:00Z"
    assert normalise_birthdate("1980-03-05T01:30:00+02:00", today=today) == "1980-03-04T23:30:00Z"
    for bad in ("1899-12-31", "2027-01-01", "31/02/1980", "1980-03-05T10:00", "hier", 1980):
        with pytest.raises(FieldError):
            normalise_birthdate(bad, today=today)


def test_phones_and_postal_codes_are_text() -> None:
    for contact, location in (
        ({"phone": 612345678}, "phone"),
        ({"address": {"postalcode": 1000}}, "address.postalcode"),
    ):
        with pytest.raises(ContactValidationError, match="not as a number") as info:
            validate_contact(contact)
        assert info.value.location == location
    out = validate_contact({"phone": " 06 12 34 56 78 ", "address": {"housenumber": 12}})
    assert out == {"phone": "06 12 34 56 78", "address": {"housenumber": "12"}}


def test_suggest() -> None:
    assert suggest("surnme", ["firstname", "surname"]) == "surname"
    assert suggest("MAIL", ["mail"]) == "mail"
    assert suggest("qqqq", ["mail"]) is None


def log_bodies(fake: FakeQomon, route: str) -> list[Any]:
    """The decoded bodies of the requests on ``route``, as the emulator received them."""
    bodies: list[Any] = []

    def log(info: RequestInfo) -> bool:
        bodies.append(info.body)
        return False

    fake.inject(_NEVER, route=route, when=log)
    return bodies


# -- through the client -------------------------------------------------------------------------


@pytest.fixture
async def fake() -> Any:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


async def test_the_typo_is_refused_and_nothing_is_sent(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        typo = cast(ContactDict, {"firstnme": "Typo", "mail": "typo@example.org"})
        with pytest.raises(ContactValidationError, match="did you mean `firstname`") as info:
            await client.create_contact(typo)
        assert info.value.location == "firstnme"
        results = [r async for r in client.create_contacts([typo])]
        assert results[0].status is CreateStatus.FAILED
        assert isinstance(results[0].error, ContactValidationError)
        with pytest.raises(ContactValidationError, match="did you mean `firstname`"):
            await client.upsert_contact(cast(Any, {"firstnme": "Typo"}))
    assert fake.requests == []


async def test_strict_false_sends_the_unknown_key(fake: FakeQomon) -> None:
    bodies = log_bodies(fake, "POST /contacts")
    extra = cast(ContactDict, {"firstname": "A", "mail": "a@example.org", "future_field": "x"})
    async with QomonClient(KEY, base_url=fake.base_url, strict=False) as client:
        created = await client.create_contact(extra)
        assert created.id > 0
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        with pytest.raises(ContactValidationError):
            await client.create_contact(extra)
        again = await client.create_contact(
            cast(ContactDict, {"mail": "b@example.org", "future_field": "y"}), strict=False
        )
        assert isinstance(again.id, int)
    assert [b["data"]["contact"]["future_field"] for b in bodies] == ["x", "y"]


async def test_tags_given_as_strings_are_written_as_qomon_expects(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        one = await client.create_contact({"firstname": "T", "tags": ["vip"]})
        two = await client.create_contact({"firstname": "U", "tags": "vip;bénévole"})
        three = await client.create_contact(
            ContactWrite(firstname="V", tags=[]), strict=True
        )  # a Struct goes through the same rules
    assert [t.name for t in one.tags] == ["vip"]
    assert [t.name for t in two.tags] == ["vip", "bénévole"]
    assert three.tags == []


# -- the same verdicts through the three front doors ------------------------------------------


def _verdicts_python(base_url: str, field: str, mails: list[str]) -> tuple[list[bool], list[bool]]:
    async def run() -> tuple[list[bool], list[bool]]:
        one: list[bool] = []
        async with QomonClient(KEY, base_url=base_url) as client:
            for i, mail in enumerate(mails):
                try:
                    contact = {"firstname": f"One{i}", field: mail}
                    await client.create_contact(cast(ContactDict, contact))
                except ContactValidationError:
                    one.append(False)
                else:
                    one.append(True)
            bulk = [
                cast(ContactDict, {"firstname": f"Bulk{i}", field: mail})
                for i, mail in enumerate(mails)
            ]
            results = [r async for r in client.create_contacts(bulk, ordered=True)]
        many = []
        for r in results:
            assert r.status in (CreateStatus.CREATED, CreateStatus.FAILED), r
            if r.status is CreateStatus.FAILED:
                assert isinstance(r.error, ContactValidationError), r.error
            many.append(r.ok)
        return one, many

    return asyncio.run(run())


def _verdicts_cli(
    base_url: str, field: str, mails: list[str], message: str, tmp_path: Path
) -> list[bool]:
    source = tmp_path / "mails.csv"
    with open(source, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["firstname", field])
        writer.writerows([f"Cli{i}", mail] for i, mail in enumerate(mails))
    report = tmp_path / "report.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QOMON_")}
    env["QOMON_API_KEY"] = KEY
    done = subprocess.run(
        [
            SCRIPT,
            "import",
            str(source),
            "--base-url",
            base_url,
            "--report",
            str(report),
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr + done.stdout
    with open(report, encoding="utf-8", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["row"]))
    assert [int(r["row"]) for r in rows] == list(range(1, len(mails) + 1))
    for r in rows:
        assert r["status"] in ("created", "failed"), r
        if r["status"] == "failed":
            assert message in r["error"], r
    return [r["status"] == "created" for r in rows]


TODAY = dt.datetime.now(dt.timezone.utc).date()
TABLES = [
    ("mail", GOOD_MAILS, BAD_MAILS, "not an email address"),
    (
        "birthdate",
        ["1980-05-12", "12/05/1980", "2/5/1980", "1980-05-12T08:30:00+02:00", "1900-01-01"],
        ["31/02/1980", "1899-12-31", (TODAY + dt.timedelta(days=2)).isoformat(), "hier",
         "1980-05-12T08:30:00", "12-05-1980"],
        "date",
    ),
    ("gender", ["F", "m", "O"], ["X", "femme"], "gender must be F, M or O"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "good", "bad", "message"), TABLES, ids=[t[0] for t in TABLES])
def test_a_table_gives_the_same_verdicts_everywhere(
    tmp_path: Path, field: str, good: list[str], bad: list[str], message: str
) -> None:
    values = good + bad
    expected = [True] * len(good) + [False] * len(bad)
    with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        one, many = _verdicts_python(fake.base_url, field, values)
        cli = _verdicts_cli(fake.base_url, field, values, message, tmp_path)
        stored = len(fake.contacts)
    assert one == expected
    assert many == expected
    assert cli == expected
    assert stored == 3 * len(good)
