"""The demo's data: deterministic, realistic, with its deliberate failures, and a mapping that
resolves against the emulator's seeded forms."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from qomon_async._importer import (
    DEMO_BAD_ROWS,
    DEMO_COLUMNS,
    DEMO_MAPPING_TOML,
    ContactBuilder,
    FormCatalog,
    demo_rows,
    load_mapping,
    open_input,
    write_demo_csv,
    write_demo_mapping,
)


def seeded_forms() -> dict[str, list[dict[str, Any]]]:
    seed = pytest.importorskip("qomon_async.testing._seed")
    forms: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for form in seed.build_forms():
        forms[form["_category"]].append(seed.public_form(form))
    return forms


def test_demo_rows_are_deterministic_and_unique() -> None:
    first = list(demo_rows(1000, seed=7))
    assert first == list(demo_rows(1000, seed=7))
    assert first != list(demo_rows(1000, seed=8))
    assert len(first) == 1000
    assert all(tuple(row) == DEMO_COLUMNS for row in first)
    mails = [row["E-mail"] for row in first]
    assert len(set(mails)) == len(mails)
    assert any(row["Code postal"].startswith("0") for row in first)
    assert all(row["Portable"].replace(" ", "")[:2] in ("06", "07", "") for row in first)
    assert any(";" in row["Tags"] for row in first)


def test_demo_file_imports_with_exactly_the_deliberate_failures(tmp_path: Path) -> None:
    csv_path = write_demo_csv(tmp_path / "demo.csv", 1000)
    mapping = load_mapping(write_demo_mapping(tmp_path / "demo.toml"))
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")  # as Excel writes it
    assert ";01000;" in csv_path.read_text(encoding="utf-8-sig")
    for route in ("create", "upsert"):
        builder = ContactBuilder(mapping, route=route, forms=FormCatalog(seeded_forms()))
        with open_input(csv_path) as reader:
            assert reader.delimiter == ";"
            assert builder.check_columns(reader.columns or ()) == []
            built = [builder.build(row) for row in reader]
        failed = [(b.number, b.errors[0].column) for b in built if not b.ok]
        assert failed == [(number, column) for number, column, _ in DEMO_BAD_ROWS]
        contacts = [b.contact for b in built if b.contact is not None]
        assert all("import-demo" in str(c["tags"]) for c in contacts)
        advanced = "formdatas" if route == "create" else "consents"
        assert sum(advanced in c for c in contacts) > 500


def test_small_demo_keeps_its_bad_rows() -> None:
    rows = list(demo_rows(10))
    assert rows[0]["E-mail"] == DEMO_BAD_ROWS[0][2]
    assert rows[3]["Date de naissance"] == DEMO_BAD_ROWS[1][2]
    assert rows[7]["Soutien"] == DEMO_BAD_ROWS[2][2]


def test_demo_mapping_form_labels(tmp_path: Path) -> None:
    mapping = load_mapping(write_demo_mapping(tmp_path / "demo.toml"))
    assert (tmp_path / "demo.toml").read_text(encoding="utf-8") == DEMO_MAPPING_TOML
    labels = {c.form_type: c.form_label for c in mapping.advanced.values()}
    assert labels == {
        "consent": "Newsletter",
        "level_of_support": "Level of support",
        "custom_fields": "Job",
    }
