"""``qomon-async import`` and ``qomon-async demo`` as users run them: the real console script in
a subprocess, against the emulator on a background thread of the test process (its clock
scaled, so that no test waits through Qomon seconds)."""

from __future__ import annotations

import asyncio
import csv
import http.server
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qomon_async import ContactValidationError, QomonClient, RowMapper
from qomon_async._dedupe import duplicate_key
from qomon_async._importer import write_demo_csv, write_demo_mapping
from qomon_async.testing import FakeQomon, Latency, RequestInfo, SlowAnswer, Unauthorized

SCRIPT = str(Path(sys.executable).with_name("qomon-async"))
# Distinctive, so that a leak anywhere (stdout, stderr, report) is found by a plain search.
KEY = "sk-live-QOMONTEST-7f3a9c1e55d24b6b"

pytestmark = pytest.mark.skipif(not Path(SCRIPT).exists(), reason="console script not installed")


@pytest.fixture
def fake() -> Iterator[FakeQomon]:
    with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QOMON_")}
    base["QOMON_API_KEY"] = KEY
    base.update(extra)
    return base


def cli(
    *args: object, cwd: Path, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**extra),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert KEY[8:] not in text


def read_report(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def people(count: int, prefix: str = "p") -> list[list[str]]:
    return [
        [f"Prénom{i}", f"Nom{i}", f"{prefix}{i}@example.org", "Lyon", "bénévole;phoning"]
        for i in range(1, count + 1)
    ]


def mails(fake: FakeQomon) -> Counter[str]:
    return Counter(c["mail"] for c in fake.contacts.values())


def writes(fake: FakeQomon) -> list[str]:
    return [r.route for r in fake.requests if r.method != "GET" and r.route != "POST /search"]


HEADER = ["firstname", "surname", "mail", "address.city", "tags"]


# -- the plain import ------------------------------------------------------------------------


def test_csv_with_a_bad_row_creates_the_rest_and_reports_it(
    fake: FakeQomon, tmp_path: Path
) -> None:
    rows = people(6)
    rows[2][2] = "pas-un-email@"
    source = write_csv(tmp_path / "contacts.csv", HEADER, rows, delimiter=";")
    report = tmp_path / "report.csv"

    done = cli("import", source, "--base-url", fake.base_url, "--report", report, cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    assert mails(fake) == Counter(f"p{i}@example.org" for i in (1, 2, 4, 5, 6))
    contact = next(c for c in fake.contacts.values() if c["mail"] == "p1@example.org")
    assert contact["address"]["city"] == "Lyon"
    assert sorted(t["name"] for t in contact["tags"]) == ["bénévole", "phoning"]
    lines = read_report(report)
    assert [int(r["row"]) for r in sorted(lines, key=lambda r: int(r["row"]))] == [1, 2, 3, 4, 5, 6]
    by_row = {int(r["row"]): r for r in lines}
    assert by_row[3]["status"] == "failed"
    assert "not an email address" in by_row[3]["error"]
    assert by_row[3]["attempts"] == "0"
    assert {by_row[i]["status"] for i in (1, 2, 4, 5, 6)} == {"created"}
    assert {int(by_row[i]["contact_id"]) for i in (1, 2, 4, 5, 6)} == set(fake.contacts)
    assert "created  5" in done.stdout and "failed   1" in done.stdout
    assert "row 3: failed" in done.stdout
    assert "6/6 rows (100%)" in done.stderr  # plain progress lines when not on a terminal
    assert_no_key(done.stdout, done.stderr, report.read_text(encoding="utf-8"))


def test_jsonl_file_with_nested_fields(fake: FakeQomon, tmp_path: Path) -> None:
    source = tmp_path / "contacts.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(
                {
                    "firstname": f"Ana{i}",
                    "surname": "Lopes",
                    "mail": f"ana{i}@example.org",
                    "address": {"city": "Nantes", "postalcode": "44000"},
                    "tags": ["adhérent"],
                }
            )
            for i in range(1, 5)
        )
        + "\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.jsonl"

    done = cli(
        "import", source, "--base-url", fake.base_url, "--report", report, "--progress", "none",
        cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stderr == ""
    assert len(fake.contacts) == 4
    assert {c["address"]["postalcode"] for c in fake.contacts.values()} == {"44000"}
    lines = read_report(report)
    assert sorted(r["row"] for r in lines) == [1, 2, 3, 4]
    assert all(r["status"] == "created" and isinstance(r["contact_id"], int) for r in lines)


MAPPING = """\
ignore = ["Notes"]

[columns]
"Prénom" = "firstname"
"Nom" = "surname"
"Courriel" = "mail"
"Ville" = "address.city"

[constants]
tags = "import-test"

[advanced."Newsletter"]
form_type = "consent"
form = "Newsletter"
values = { "oui" = "consent_email", "non" = "no_consent_email" }

[advanced."Soutien"]
form_type = "level_of_support"
form = "Level of support"
values = { "Citoyen" = "citizen", "Élu" = "elected_official" }

[advanced."Métier"]
form_type = "custom_fields"
form = "Job"
"""

MAPPED_HEADER = ["Prénom", "Nom", "Courriel", "Ville", "Newsletter", "Soutien", "Métier", "Notes"]


def mapped_rows() -> list[list[str]]:
    return [
        ["Jeanne", "Martin", "jeanne@example.org", "Lille", "oui", "Citoyen", "Infirmière", "x"],
        ["Paul", "Roux", "paul@example.org", "Caen", "non", "Élu", "", ""],
        ["Zoé", "Petit", "zoe@example.org", "Nice", "", "", "Boulangère", "y"],
    ]


def test_mapping_file_with_advanced_fields(fake: FakeQomon, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "export.csv", MAPPED_HEADER, mapped_rows(), delimiter="\t")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")

    done = cli("import", source, "--mapping", mapping, "--base-url", fake.base_url, cwd=tmp_path)

    assert done.returncode == 0, done.stderr + done.stdout
    forms_read = {r.path for r in fake.requests if r.method == "GET"}
    assert forms_read == {
        "/v1/forms/type/consent",
        "/v1/forms/type/level_of_support",
        "/v1/forms/type/custom_fields",
    }
    by_mail = {c["mail"]: c for c in fake.contacts.values()}
    assert set(by_mail) == {"jeanne@example.org", "paul@example.org", "zoe@example.org"}
    jeanne = by_mail["jeanne@example.org"]
    assert jeanne["firstname"] == "Jeanne" and jeanne["address"]["city"] == "Lille"
    assert [t["name"] for t in jeanne["tags"]] == ["import-test"]
    answers = json.dumps(jeanne, ensure_ascii=False)
    for expected in ("consent_email", "citizen", "Infirmière"):
        assert expected in answers
    assert "Boulangère" in json.dumps(by_mail["zoe@example.org"], ensure_ascii=False)


def test_dry_run_lists_problems_and_writes_nothing(fake: FakeQomon, tmp_path: Path) -> None:
    rows = mapped_rows()
    rows[1][2] = "paul@"  # row 2: bad email
    rows[2][5] = "Peut-être"  # row 3: not an option of the form
    source = write_csv(tmp_path / "export.csv", MAPPED_HEADER, rows)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")

    done = cli(
        "import", source, "--mapping", mapping, "--dry-run", "--base-url", fake.base_url,
        "--report", tmp_path / "check.csv", cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    problems = [line for line in done.stdout.splitlines() if line.startswith("row ")]
    assert len(problems) == 2
    assert problems[0].startswith('row 2 (line 3), column "Courriel": ')
    assert "paul@" in problems[0]
    assert problems[1].startswith('row 3 (line 4), column "Soutien": not an option')
    assert "1 valid, 2 invalid" in done.stdout and "Nothing was sent" in done.stdout
    assert writes(fake) == []  # the forms were read, nothing was written
    assert fake.contacts == {}
    statuses = [r["status"] for r in read_report(tmp_path / "check.csv")]
    assert statuses == ["valid", "invalid", "invalid"]


def test_dry_run_of_a_clean_file_exits_0_without_a_key(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "contacts.csv", HEADER, people(3))
    done = cli("import", source, "--dry-run", cwd=tmp_path, QOMON_API_KEY="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 valid, 0 invalid" in done.stdout


def test_upsert_route(fake: FakeQomon, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "contacts.csv", HEADER, people(3, prefix="u"))
    done = cli("import", source, "--route", "upsert", "--verify", "--base-url", fake.base_url,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert {r.route for r in fake.requests if r.method == "POST"} >= {"POST /contacts/upsert"}
    assert mails(fake) == Counter(f"u{i}@example.org" for i in (1, 2, 3))


# -- input and usage errors --------------------------------------------------------------------


def test_bad_encoding_exits_2_with_a_clear_message(fake: FakeQomon, tmp_path: Path) -> None:
    source = tmp_path / "excel.csv"
    source.write_bytes("firstname,mail\nJosé,jose@example.org\nRené,rene@example.org\n"
                       .encode("cp1252"))  # fmt: skip

    done = cli("import", source, "--base-url", fake.base_url, cwd=tmp_path)

    assert done.returncode == 2
    assert "line 2" in done.stderr and "0xE9" in done.stderr
    assert "iconv -f WINDOWS-1252 -t UTF-8" in done.stderr
    assert fake.requests == []


def test_unknown_column_and_missing_key_exit_2(fake: FakeQomon, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", ["firstname", "mail", "Fax"], [["A", "a@ex.org", "1"]])
    done = cli("import", source, "--base-url", fake.base_url, cwd=tmp_path)
    assert done.returncode == 2
    assert 'column "Fax"' in done.stderr and "nothing was sent" in done.stderr

    good = write_csv(tmp_path / "d.csv", ["firstname", "mail"], [["A", "a@ex.org"]])
    done = cli("import", good, "--base-url", fake.base_url, cwd=tmp_path, QOMON_API_KEY="")
    assert done.returncode == 2
    assert "no API key" in done.stderr
    assert fake.requests == []


def test_unauthorized_mid_run_exits_3_and_skips_the_rest(fake: FakeQomon, tmp_path: Path) -> None:
    fake.inject(Unauthorized(), route="POST /contacts", from_nth=6)
    source = write_csv(tmp_path / "contacts.csv", HEADER, people(40))
    report = tmp_path / "report.csv"
    journal = tmp_path / "journal.sqlite"

    done = cli(
        "import", source, "--base-url", fake.base_url, "--report", report, "--journal", journal,
        "--concurrency", "2", cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 3, done.stderr + done.stdout
    assert "401" in done.stdout and "refused the API key" in done.stdout
    statuses = Counter(r["status"] for r in read_report(report))
    assert sum(statuses.values()) == 40
    assert statuses["created"] == len(fake.contacts) == 5
    assert statuses["skipped"] >= 30
    assert set(statuses) <= {"created", "failed", "skipped"}
    assert_no_key(done.stdout, done.stderr, report.read_text(encoding="utf-8"))

    # With the key accepted again, the same journal finishes the job: nobody twice.
    fake.clear_faults()
    again = cli("import", source, "--base-url", fake.base_url, "--journal", journal,
                cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr + again.stdout
    assert mails(fake) == Counter(f"p{i}@example.org" for i in range(1, 41))


# -- kill -9 and resume --------------------------------------------------------------------------


@pytest.mark.parametrize("processed", [True, False], ids=["in-flight-processed", "in-flight-lost"])
def test_kill_9_in_the_middle_then_resume_creates_everyone_exactly_once(
    fake: FakeQomon, tmp_path: Path, processed: bool
) -> None:
    total, answered, concurrency = 60, 12, 6
    # The creates after the 12th hang: either processed and their answers held (the contacts
    # exist on Qomon's side), or held before processing (they do not). The run is killed
    # with the journal saying "attempting" for them: the next run must find the first kind
    # by lookup and send the second kind, without knowing which is which.
    fault = SlowAnswer(seconds=1e6) if processed else Latency(seconds=1e6)
    rule = fake.inject(fault, route="POST /contacts", from_nth=answered + 1)
    source = write_csv(tmp_path / "contacts.csv", HEADER, people(total))
    journal = tmp_path / "journal.sqlite"
    first_report = tmp_path / "first.csv"
    process = subprocess.Popen(
        [SCRIPT, "import", str(source), "--base-url", fake.base_url, "--journal", str(journal),
         "--report", str(first_report), "--concurrency", str(concurrency)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        expected = answered + (concurrency if processed else 0)
        deadline = time.monotonic() + 20
        while len(fake.contacts) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # let the hanging requests all arrive
        assert len(fake.contacts) == expected
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    db = sqlite3.connect(journal)
    try:
        states = Counter(dict(db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state")))
    finally:
        db.close()  # an open connection would hold the journal: the next run refuses it
    assert states == {"created": answered, "attempting": concurrency}

    rule.remove()
    report = tmp_path / "report.csv"
    done = cli("import", source, "--base-url", fake.base_url, "--journal", journal,
               "--report", report, cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stderr + done.stdout
    assert mails(fake) == Counter(f"p{i}@example.org" for i in range(1, total + 1))
    lines = read_report(report)
    assert sorted(int(r["row"]) for r in lines) == list(range(1, total + 1))
    assert {r["status"] for r in lines} == {"created"}
    resumed = [r for r in lines if r["resumed"] == "true"]
    reconciled = [r for r in lines if r["reconciled"] == "true"]
    assert len(resumed) == answered
    # Found by lookup and not sent again, or looked up, absent, and sent.
    assert len(reconciled) == (concurrency if processed else 0)
    assert all(r["attempts"] == "0" for r in reconciled)
    ids = {int(r["contact_id"]) for r in lines}
    assert ids == set(fake.contacts)
    assert f"{answered} rows finished by an earlier run" in done.stdout

    # A third run has nothing left to do and sends nothing.
    before = len(fake.requests)
    third = cli("import", source, "--base-url", fake.base_url, "--journal", journal, cwd=tmp_path)
    assert third.returncode == 0
    assert len(fake.requests) == before


def test_journal_of_another_file_is_refused(fake: FakeQomon, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    first = write_csv(tmp_path / "a.csv", HEADER, people(2))
    assert cli("import", first, "--base-url", fake.base_url, "--journal", journal,
               cwd=tmp_path).returncode == 0  # fmt: skip
    other = write_csv(tmp_path / "b.csv", HEADER, people(3))
    done = cli("import", other, "--base-url", fake.base_url, "--journal", journal, cwd=tmp_path)
    assert done.returncode == 2
    assert "made for another input" in done.stderr
    assert len(fake.contacts) == 2


# -- the demo ------------------------------------------------------------------------------------


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = cli("demo", "--rows", "200", "--output-dir", out, "--time-scale", "1000",
               cwd=tmp_path, QOMON_API_KEY="")  # fmt: skip

    assert done.returncode == 0, done.stderr + done.stdout
    assert "created  197" in done.stdout and "failed   3" in done.stdout
    assert "As designed" in done.stdout
    assert "The emulator stored 197 contacts" in done.stdout
    lines = read_report(out / "report.csv")
    assert len(lines) == 200
    failed = sorted(int(r["row"]) for r in lines if r["status"] == "failed")
    assert failed == [27, 82, 155]
    assert {p.name for p in out.iterdir()} >= {"contacts.csv", "mapping.toml", "report.csv",
                                               "journal.sqlite"}  # fmt: skip
    assert "demo-" not in done.stdout + done.stderr  # its generated key is never shown

    # Run again into the same directory: a fresh emulator, a fresh journal, the same result.
    again = cli("demo", "--rows", "50", "--output-dir", out, "--time-scale", "1000",
                "--progress", "none", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "created  47" in again.stdout


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("import", "demo", "fake-server"):
        assert command in done.stdout
    usage = cli("import", "--help", cwd=tmp_path).stdout
    for option in ("--mapping", "--route", "--concurrency", "--dry-run", "--report", "--journal",
                   "--api-key", "--base-url", "Exit codes"):  # fmt: skip
        assert option in usage
    assert cli("import", cwd=tmp_path).returncode == 2


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    args = ["demo", "--rows", "60", "--output-dir", tmp_path / "d", "--time-scale", "1000"]
    done = subprocess.run(
        [SCRIPT, *map(str, args), "--progress", "bar"],
        capture_output=True, env=env(COLUMNS="100"), cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert b"\r[" in done.stderr  # redrawn in place
    assert b"ETA" in done.stderr and b"rows/s" in done.stderr and b"60/60" in done.stderr


def test_jsonl_bad_line_and_repeated_person(fake: FakeQomon, tmp_path: Path) -> None:
    source = tmp_path / "contacts.ndjson"
    source.write_text(
        '{"firstname": "Ana", "mail": "ana@example.org"}\n'
        "{not json\n"
        "\n"
        '{"firstname": "Ana", "mail": "ANA@example.org "}\n'
        '{"firstname": "Bea", "mail": "bea@example.org"}\n',
        encoding="utf-8",
    )
    report = tmp_path / "report.jsonl"
    done = cli("import", source, "--base-url", fake.base_url, "--report", report, cwd=tmp_path)

    assert done.returncode == 1, done.stderr + done.stdout
    assert mails(fake) == Counter(["ana@example.org", "bea@example.org"])
    by_row = {r["row"]: r for r in read_report(report)}
    assert by_row[2]["status"] == "failed" and "not valid JSON" in by_row[2]["error"]
    assert by_row[3]["status"] == "skipped" and "same mail and names as row 1" in by_row[3]["error"]
    assert by_row[3]["line"] == 4
    assert {by_row[1]["status"], by_row[4]["status"]} == {"created"}


# -- a server id beyond 64 bits (the journal keeps it whole) ----------------------------------


class _BigIdHandler(http.server.BaseHTTPRequestHandler):
    """A server whose contact ids do not fit SQLite's 64-bit INTEGER."""

    next_id = 2**63 + 5

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/").endswith("/contacts"):
            contact = dict(body["data"]["contact"], id=type(self).next_id)
            type(self).next_id += 1
            self._answer(201, {"status": "success", "data": {"contact": contact}})
        else:
            self._answer(404, {"title": "not found"})

    def _answer(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_id_beyond_64_bits_never_crashes_the_journal(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BigIdHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = write_csv(tmp_path / "in.csv", HEADER, people(2))
        journal = tmp_path / "journal.db"
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        done = cli(
            "import",
            source,
            "--base-url",
            base_url,
            "--journal",
            journal,
            "--progress",
            "none",
            cwd=tmp_path,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode in (0, 1), done.stderr + done.stdout
    if done.returncode == 0:
        # Accepted by the decoder: the journal keeps every digit.
        with sqlite3.connect(journal) as db:
            stored = {bytes(v).decode() for (v,) in db.execute("SELECT contact_id FROM rows")}
        assert stored == {str(2**63 + 5), str(2**63 + 6)}


# -- duplicates in the input (skipped, counted apart, not a failure) ----------------------------


def test_in_file_duplicates_are_skipped_and_exit_0(fake: FakeQomon, tmp_path: Path) -> None:
    rows = people(4)
    rows.insert(2, list(rows[0]))  # row 3 repeats row 1
    rows.append([rows[1][0].upper(), rows[1][1], " " + rows[1][2].upper(), "Lyon", ""])  # row 6
    source = write_csv(tmp_path / "dups.csv", HEADER, rows)
    report = tmp_path / "report.csv"
    done = cli("import", source, "--base-url", fake.base_url, "--report", report, cwd=tmp_path)

    assert done.returncode == 0, done.stderr + done.stdout
    assert len(fake.contacts) == 4
    by_row = {int(r["row"]): r for r in read_report(report)}
    assert [by_row[n]["status"] for n in range(1, 7)] == [
        "created", "created", "skipped", "created", "created", "skipped",
    ]  # fmt: skip
    assert "row 3 has the same mail and names as row 1: not sent" in by_row[3]["error"]
    assert "row 6 has the same mail and names as row 2" in by_row[6]["error"]
    assert re.search(r"skipped +2 \(2 duplicates\)", done.stdout), done.stdout
    assert "2 rows repeat an earlier row (same mail and names): skipped, not sent." in done.stdout
    assert "rows not created" not in done.stdout


def test_dedupe_key_mail_stores_one_contact_per_mail(fake: FakeQomon, tmp_path: Path) -> None:
    header = ["firstname", "surname", "mail"]
    rows = [
        ["Jeanne", "Martin", "famille.martin@example.org"],
        ["Paul", "Martin", "famille.martin@example.org"],  # same mail, another name
        ["Ana", "Lopez", "ana@example.org"],
    ]
    source = write_csv(tmp_path / "family.csv", header, rows)
    report = tmp_path / "r.jsonl"
    both = cli("import", source, "--base-url", fake.base_url, cwd=tmp_path)
    assert both.returncode == 0, both.stderr + both.stdout
    assert mails(fake)["famille.martin@example.org"] == 2  # the default: mail and names

    with FakeQomon(api_key=KEY, time_scale=1000) as other:
        done = cli(
            "import", source, "--base-url", other.base_url, "--dedupe-key", "mail",
            "--report", report, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        assert mails(other) == Counter(["famille.martin@example.org", "ana@example.org"])
    by_row = {r["row"]: r for r in read_report(report)}
    assert by_row[2]["status"] == "skipped"
    assert "row 2 has the same mail as row 1" in by_row[2]["error"]


def test_a_failed_row_still_makes_exit_1_next_to_duplicates(
    fake: FakeQomon, tmp_path: Path
) -> None:
    rows = people(3)
    rows.append(list(rows[0]))
    rows[1][2] = "pas-un-email@"
    source = write_csv(tmp_path / "mixed.csv", HEADER, rows)
    done = cli("import", source, "--base-url", fake.base_url, cwd=tmp_path)
    assert done.returncode == 1, done.stderr + done.stdout
    assert "1 rows not created" in done.stdout
    assert "1 rows repeat an earlier row" in done.stdout


# -- contact_from_row: the very rules of the command line ---------------------------------------


def test_contact_from_row_gives_the_bodies_the_cli_sends(tmp_path: Path) -> None:
    source = write_demo_csv(tmp_path / "demo.csv", 300)
    mapping = write_demo_mapping(tmp_path / "mapping.toml")
    with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        sent: list[Any] = []

        def log(info: RequestInfo) -> bool:
            sent.append(info.body["data"]["contact"])
            return False

        fake.inject(Latency(0.0), route="POST /contacts", when=log)
        done = cli(
            "import",
            source,
            "--base-url",
            fake.base_url,
            "--mapping",
            mapping,
            "--concurrency",
            "1",
            "--progress",
            "none",
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr + done.stdout  # the demo's deliberate bad rows

        async def build() -> list[Any]:
            async with QomonClient(KEY, base_url=fake.base_url) as client:
                mapper = await RowMapper.load(mapping, client=client)
            built: list[Any] = []
            seen: set[int | None] = set()
            with open(source, encoding="utf-8-sig", newline="") as f:
                for number, row in enumerate(csv.DictReader(f, delimiter=";"), start=1):
                    try:
                        contact = mapper(row, number=number)
                    except ContactValidationError:
                        continue
                    key = duplicate_key(contact)
                    if key is not None and key in seen:
                        continue
                    seen.add(key)
                    built.append(contact)
            return built

        expected = asyncio.run(build())
    assert len(sent) == len(expected) > 250
    assert sent == [json.loads(json.dumps(c)) for c in expected]
