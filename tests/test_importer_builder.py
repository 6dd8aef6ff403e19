"""The importer's pure core: conversions, the mapping file, form resolution, contact building."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from qomon_async._importer import (
    ContactBuilder,
    ConversionError,
    FormCatalog,
    ImportMapping,
    MappingError,
    RowError,
    SourceRow,
    format_rfc3339,
    load_mapping,
    parse_date,
    parse_mapping,
    validate_rows,
)

TODAY = dt.date(2026, 6, 1)

FORMS: dict[str, list[dict[str, Any]]] = {
    "consent": [
        {
            "id": 47566,
            "label": "Consentement email",
            "type": "checkbox",
            "refvalues": [
                {"id": 15648, "label": "J'accepte les emails", "value": "consent_email"},
                {"id": 15649, "label": "Je refuse", "value": "no_consent_email"},
            ],
        },
        {"id": 1, "label": "Twin", "type": "radio", "refvalues": []},
        {"id": 2, "label": "Twin", "type": "radio", "refvalues": []},
    ],
    "level_of_support": [
        {
            "id": 11238,
            "label": "Level of support",
            "type": "radio",
            "refvalues": [
                {"id": 17863, "label": "Elected official", "value": "elected_official"},
                {"id": 17867, "label": "To be convinced", "value": "to_be_convinced"},
            ],
        }
    ],
    "custom_fields": [
        {"id": 12519, "label": "Job", "type": "text", "refvalues": [{"id": 19491}]},
        {"id": 12520, "label": "Date of first job", "type": "date", "refvalues": [{"id": 19492}]},
        {"id": 12521, "label": "Children", "type": "numeric", "refvalues": [{"id": 19493}]},
        {
            "id": 879854,
            "label": "Favorites food",
            "type": "checkbox",
            "refvalues": [
                {"id": 98741, "label": "hamburger", "value": "hamburger"},
                {"id": 98742, "label": "pizza", "value": "pizza"},
            ],
        },
    ],
    "presence_status": [
        {
            "id": 11239,
            "label": "Presence status",
            "type": "radio",
            "refvalues": [{"id": 17870, "label": "refusal", "value": "refus"}],
        }
    ],
    "survey": None,  # type: ignore[dict-item]  # Qomon may answer "forms": null
}

ADVANCED_TOML = {
    "advanced": {
        "Consentement": {
            "form_type": "consent",
            "form": "Consentement email",
            "values": {"oui": "consent_email", "non": "no_consent_email", "?": ""},
        },
        "Soutien": {"form_type": "level_of_support", "form": "level of  SUPPORT"},
        "Métier": {"form_type": "custom_fields", "form": "Job"},
        "Premier emploi": {"form_type": "custom_fields", "id": 12520},
        "Enfants": {"form_type": "custom_fields", "form": "Children"},
        "Plats": {"form_type": "custom_fields", "form": "Favorites food", "split": ","},
        "Présence": {"form_type": "presence_status", "form": "Presence status"},
    }
}


def row(number: int = 1, /, **values: object) -> SourceRow:
    return SourceRow(number, number + 1, dict(values))


def builder(data: dict[str, Any] | None = None, route: str = "create") -> ContactBuilder:
    mapping = parse_mapping(data or {})
    return ContactBuilder(mapping, route=route, forms=FormCatalog(FORMS), today=TODAY)  # type: ignore[arg-type]


# -- conversions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1980-05-12", "1980-05-12T00:00:00Z"),
        ("12/05/1980", "1980-05-12T00:00:00Z"),
        ("2/5/1980", "1980-05-02T00:00:00Z"),
        ("1980-05-12T08:30:00Z", "1980-05-12T08:30:00Z"),
        ("1980-05-12T00:30:00+02:00", "1980-05-11T22:30:00Z"),
        ("1999-12-31T23:00:00.000Z", "1999-12-31T23:00:00Z"),
        ("2022-10-13T15:50:34.643724Z", "2022-10-13T15:50:34.643724Z"),
        ("1980-05-12 00:00:00", "1980-05-12T00:00:00Z"),
    ],
)
def test_dates_are_normalised_to_rfc3339_utc(text: str, expected: str) -> None:
    assert format_rfc3339(parse_date(text)) == expected


@pytest.mark.parametrize(
    "text", ["31/02/1985", "2020-13-01", "05/12/80", "12.05.1980", "1980-05-12T08:30:00", "x"]
)
def test_bad_dates_are_refused(text: str) -> None:
    with pytest.raises(ConversionError):
        parse_date(text)


# -- default mapping ------------------------------------------------------------------------


def test_default_columns_are_contact_fields_and_empty_cells_are_left_out() -> None:
    built = builder().build(
        row(
            firstname=" Jeanne ",
            surname="Dupont",
            mail="jeanne@example.org",
            mobile="",
            gender="f",
            birthdate="06/07/1955",
            birthcity="Lyon",
            age_category="3",
            black_list="non",
            tags="bénévole; sympathisant;;bénévole",
            **{"address.postalcode": "01000", "address.city": "Bourg-en-Bresse"},
            **{"address.street": "   "},
        )
    )
    assert built.errors == ()
    assert built.contact == {
        "firstname": "Jeanne",
        "surname": "Dupont",
        "gender": "F",
        "birthdate": "1955-07-06T00:00:00Z",
        "age_category": 3,
        "birthcity": "Lyon",
        "mail": "jeanne@example.org",
        "address": {"postalcode": "01000", "city": "Bourg-en-Bresse"},
        "tags": [{"name": "bénévole"}, {"name": "sympathisant"}],
        "black_list": False,
    }


def test_aliases_and_json_types() -> None:
    built = builder().build(
        row(
            birth_city="Nice",
            **{"address.postal_code": "06000", "address.house_number": 12},
            black_list=True,
            age_category=2,
            tags=[{"name": "a"}, "b"],
        )
    )
    assert built.contact == {
        "age_category": 2,
        "birthcity": "Nice",
        "address": {"housenumber": "12", "postalcode": "06000"},
        "tags": [{"name": "a"}, {"name": "b"}],
        "black_list": True,
    }


def test_a_postal_code_given_as_a_number_is_refused() -> None:
    # A JSON number has lost its leading zero (06000 -> 6000): the same rule as the client's.
    built = builder().build(row(**{"address.postalcode": 6000, "phone": 612345678}))
    assert built.contact is None
    columns = {e.column: e.message for e in built.errors}
    assert "write it as text, not as a number" in columns["address.postalcode"]
    assert "write it as text, not as a number" in columns["phone"]


def test_every_problem_of_a_row_is_collected() -> None:
    built = builder().build(
        row(
            7,
            mail="jean@",
            gender="H",
            birthdate="2030-01-01",
            age_category="deux",
            black_list="peut-être",
            firstname=True,
            colour="blue",
        )
    )
    assert built.contact is None
    assert {e.column for e in built.errors} == {
        "mail",
        "gender",
        "birthdate",
        "age_category",
        "black_list",
        "firstname",
        "colour",
    }
    assert all(e.row == 7 and e.line == 8 for e in built.errors)
    by_column = {e.column: e for e in built.errors}
    expected = "row 7 (line 8), column \"mail\": not an email address: 'jean@'"
    assert str(by_column["mail"]) == expected
    assert "unknown column" in by_column["colour"].message
    assert "F, M or O" in by_column["gender"].message
    assert "between 1900-01-01 and today" in by_column["birthdate"].message
    assert "mail" in built.error_message and "gender" in built.error_message


@pytest.mark.parametrize(
    "mail",
    ["a@b", "a b@example.org", "a@@example.org", "@example.org", "a@example.", "a@-x.org"],
)
def test_email_shapes_refused(mail: str) -> None:
    assert not builder().build(row(mail=mail)).ok


@pytest.mark.parametrize(
    "mail", ["jean.dupont+news@example.org", "élodie@exemple.fr", "X_Y@sub.domain.co.uk"]
)
def test_email_shapes_accepted(mail: str) -> None:
    assert builder().build(row(mail=mail)).contact == {"mail": mail}


def test_parse_error_of_the_reader_becomes_a_row_error() -> None:
    built = builder().build(SourceRow(3, 5, {}, "not valid JSON: boom"))
    assert built.errors == (RowError(3, None, "not valid JSON: boom", None, 5),)


def test_row_setting_nothing_is_an_error() -> None:
    built = builder({"ignore": ["note"]}).build(row(note="hello", mail=""))
    assert built.errors[0].message == "the row sets no contact field"


def test_id_columns_only_for_upsert() -> None:
    assert builder(route="upsert").build(row(id="12", mail="a@example.org")).contact == {
        "id": 12,
        "mail": "a@example.org",
    }
    errors = builder(route="create").build(row(id="12", mail="a@example.org")).errors
    assert errors[0].column == "id"
    assert "upsert" in errors[0].message
    assert builder().check_columns(["id", "mail"])[0].column == "id"


# -- mapping file ---------------------------------------------------------------------------


MAPPING_TOML = """
ignore = ["Notes internes"]

[columns]
"E-mail" = "mail"
"Prénom" = "firstname"
"Code postal" = "address.postal_code"
"Commentaire" = false

[constants]
tags = "import-2026"
"address.country" = "France"
black_list = "no"

[values.gender]
Homme = "M"
Femme = "F"
"""


def test_mapping_file_renames_ignores_and_sets_constants(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING_TOML, encoding="utf-8")
    mapping = load_mapping(path)
    b = ContactBuilder(mapping, today=TODAY)
    columns = ["E-mail", "Prénom", "Code postal", "Commentaire", "Notes internes", "gender", "tags"]
    assert b.check_columns(columns) == []
    assert [e.column for e in b.check_columns([*columns, "Autre"])] == ["Autre"]
    built = b.build(
        row(
            **{
                "E-mail": "a@example.org",
                "Prénom": "Ana",
                "Code postal": "06000",
                "Commentaire": "x",
                "Notes internes": "y",
                "gender": "femme",
                "tags": "vip",
            }
        )
    )
    assert built.contact == {
        "firstname": "Ana",
        "gender": "F",
        "mail": "a@example.org",
        "address": {"postalcode": "06000", "country": "France"},
        "tags": [{"name": "vip"}, {"name": "import-2026"}],
        "black_list": False,
    }
    # A row's own value wins over a constant; tags are merged, never shared between rows.
    second = b.build(row(mail="b@example.org", **{"address.country": "Belgique"}))
    assert second.contact is not None
    assert second.contact["address"] == {"country": "Belgique"}
    assert second.contact["tags"] == [{"name": "import-2026"}]
    assert second.contact["tags"] is not built.contact["tags"]


def test_ignore_unknown() -> None:
    b = builder({"ignore_unknown": True})
    assert b.check_columns(["whatever", "mail"]) == []
    assert b.build(row(whatever="x", mail="a@example.org")).contact == {"mail": "a@example.org"}


def test_two_columns_for_one_field_conflict_only_when_they_differ() -> None:
    b = builder({"columns": {"E-mail": "mail"}})
    assert b.build(row(mail="a@example.org", **{"E-mail": ""})).ok
    assert b.build(row(mail="a@example.org", **{"E-mail": "a@example.org"})).ok
    errors = b.build(row(mail="a@example.org", **{"E-mail": "b@example.org"})).errors
    assert 'also given, differently, by column "mail"' in errors[0].message


def test_mapping_problems_are_all_listed() -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "colums": {},
                "columns": {"A": "nope", "B": 3},
                "constants": {"birthdate": "31/02/2000", "zzz": "1"},
                "advanced": {
                    "C": {"form_type": "poll", "form": "X"},
                    "D": {"form_type": "consent"},
                    "E": {"form_type": "consent", "form": "X", "extra": 1},
                },
            }
        )
    problems = caught.value.problems
    assert len(problems) == 8
    text = str(caught.value)
    for needle in ("'colums'", "'nope'", "birthdate", "'zzz'", "form_type", "label", "'extra'"):
        assert needle in text


def test_bad_toml_is_a_mapping_error(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[columns\n", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(path)
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.toml")


# -- advanced fields ------------------------------------------------------------------------


def test_form_types_needed() -> None:
    assert parse_mapping(ADVANCED_TOML).form_types == (
        "consent",
        "level_of_support",
        "presence_status",
        "custom_fields",
    )


ADVANCED_ROW = {
    "Consentement": "Oui",
    "Soutien": "To be convinced",
    "Métier": "Architecte",
    "Premier emploi": "01/09/2001",
    "Enfants": "2,5",
    "Plats": "pizza, HAMBURGER,pizza",
    "Présence": "refusal",
}


def test_advanced_fields_create_shape() -> None:
    built = builder(ADVANCED_TOML, "create").build(row(mail="a@example.org", **ADVANCED_ROW))
    assert built.errors == ()
    assert built.contact == {
        "mail": "a@example.org",
        "formdatas": [
            {"form_id": 47566, "form_ref_id": 15648, "data": "consent_email"},
            {"form_id": 11238, "form_ref_id": 17867, "data": "to_be_convinced"},
            {"form_id": 11239, "form_ref_id": 17870, "data": "refus"},
        ],
        "custom_fields": [
            {"form_id": 12519, "form_ref_id": 19491, "data": "Architecte"},
            {"form_id": 12520, "form_ref_id": 19492, "data": "2001-09-01T00:00:00.000Z"},
            {"form_id": 12521, "form_ref_id": 19493, "data": "2.5"},
            {"form_id": 879854, "form_ref_id": 98742, "data": "pizza"},
            {"form_id": 879854, "form_ref_id": 98741, "data": "hamburger"},
        ],
    }


def test_advanced_fields_upsert_shape() -> None:
    built = builder(ADVANCED_TOML, "upsert").build(row(mail="a@example.org", **ADVANCED_ROW))
    assert built.contact == {
        "mail": "a@example.org",
        "custom_fields": [
            {"id": 12519, "value": "Architecte"},
            {"id": 12520, "value": "2001-09-01T00:00:00.000Z"},
            {"id": 12521, "value": "2.5"},
            {"id": 879854, "value": "pizza"},
            {"id": 879854, "value": "hamburger"},
        ],
        "consents": [{"id": 47566, "value": "consent_email"}],
        "status": [{"id": 11238, "value": "to_be_convinced"}],
        "name_presences": [{"id": 11239, "value": "refus"}],
    }


def test_value_map_to_empty_leaves_the_form_unanswered() -> None:
    built = builder(ADVANCED_TOML).build(row(mail="a@example.org", Consentement="?"))
    assert built.contact == {"mail": "a@example.org"}


def test_refvalue_label_is_accepted_in_place_of_value() -> None:
    built = builder(ADVANCED_TOML).build(row(Consentement="Je refuse"))
    assert built.contact == {
        "formdatas": [{"form_id": 47566, "form_ref_id": 15649, "data": "no_consent_email"}]
    }


def test_unknown_values_are_row_errors_naming_row_and_column() -> None:
    b = builder(ADVANCED_TOML, "upsert")
    built = b.build(row(12, Soutien="Peut-être", Enfants="beaucoup", Consentement="bof"))
    # In the input's column order.
    assert [(e.row, e.column) for e in built.errors] == [
        (12, "Soutien"),
        (12, "Enfants"),
        (12, "Consentement"),
    ]
    assert "not an option of the level_of_support form" in built.errors[0].message
    assert "to_be_convinced (To be convinced)" in built.errors[0].message
    assert "expected a number" in built.errors[1].message
    assert "mapping's values: oui, non, ?" in built.errors[2].message


def test_unresolvable_forms_are_a_mapping_error() -> None:
    data = {
        "advanced": {
            "A": {"form_type": "consent", "form": "Consentement SMS"},
            "B": {"form_type": "consent", "form": "Twin"},
            "C": {"form_type": "survey", "id": 5},
        }
    }
    with pytest.raises(MappingError) as caught:
        builder(data)
    problems = caught.value.problems
    assert 'no consent form is labelled "Consentement SMS"' in problems[0]
    assert '"Consentement email"' in problems[0]
    assert "ids 1, 2" in problems[1]
    assert "no survey form has id 5" in problems[2]


def test_advanced_mapping_needs_forms() -> None:
    with pytest.raises(ValueError, match="forms"):
        ContactBuilder(parse_mapping(ADVANCED_TOML))


def test_forms_as_objects_are_accepted() -> None:
    class Ref:
        def __init__(self, id: int, label: str, value: str) -> None:
            self.id, self.label, self.value = id, label, value

    class Form:
        id, label, type = 7, "Soutien", "radio"
        refvalues = [Ref(70, "Fort", "strong")]

    catalog = FormCatalog({"level_of_support": [Form()]})
    b = ContactBuilder(
        parse_mapping({"advanced": {"S": {"form_type": "level_of_support", "form": "Soutien"}}}),
        forms=catalog,
    )
    assert b.build(row(S="fort")).contact == {
        "formdatas": [{"form_id": 7, "form_ref_id": 70, "data": "strong"}]
    }


def test_validate_rows_streams_every_error() -> None:
    rows = [row(1, mail="ok@example.org"), row(2, mail="bad"), row(3, gender="X", mail="x")]
    errors = list(validate_rows(rows, builder()))
    assert [(e.row, e.column) for e in errors] == [(2, "mail"), (3, "gender"), (3, "mail")]


def test_default_mapping_object() -> None:
    assert ImportMapping().form_types == ()
    assert ContactBuilder().build(row(mail="a@example.org")).ok


def test_an_unknown_column_names_the_closest_field() -> None:
    errors = builder().check_columns(["firstname", "surnme", "zzz"])
    by_column = {e.column: e.message for e in errors}
    assert set(by_column) == {"surnme", "zzz"}
    assert "did you mean `surname`?" in by_column["surnme"]
    assert "did you mean" not in by_column["zzz"]
