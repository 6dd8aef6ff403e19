"""The importer's input readers: CSV sniffing and decoding, JSON Lines, row numbering."""

from __future__ import annotations

from pathlib import Path

import pytest

from qomon_async._importer import (
    InputFileError,
    check_encoding,
    detect_format,
    open_input,
    sniff_delimiter,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    lines = [["firstname", "mail", "address.city"], ["Jeanne", "j@example.org", "Paris"]]
    path = write(tmp_path / "in.csv", "\n".join(delimiter.join(r) for r in lines) + "\n")
    with open_input(path) as reader:
        assert reader.delimiter == delimiter
        assert reader.columns == ("firstname", "mail", "address.city")
        rows = list(reader)
    assert [r.values for r in rows] == [
        {"firstname": "Jeanne", "mail": "j@example.org", "address.city": "Paris"}
    ]


def test_sniffing_ignores_delimiters_inside_quoted_cells(tmp_path: Path) -> None:
    text = 'nom;adresse;tags\nDupont;"12, rue Victor Hugo";"a;b"\nMartin;"3, place, X";c\n'
    with open_input(write(tmp_path / "in.csv", text)) as reader:
        assert reader.delimiter == ";"
        rows = list(reader)
    assert rows[0].values == {"nom": "Dupont", "adresse": "12, rue Victor Hugo", "tags": "a;b"}


def test_sniff_single_column_defaults_to_comma() -> None:
    assert sniff_delimiter(["mail\n", "a@example.org\n"]) == ","


def test_utf8_bom_is_dropped_and_header_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "\ufeff firstname ;mail\r\nÉlodie;e@example.org\r\n")
    with open_input(path) as reader:
        assert reader.columns == ("firstname", "mail")
        assert [r.values["firstname"] for r in reader] == ["Élodie"]


def test_row_numbers_skip_header_and_blank_lines_and_track_lines(tmp_path: Path) -> None:
    text = 'firstname,note\nA,x\n\nB,"two\nlines"\n,\nC,y\n'
    with open_input(write(tmp_path / "in.csv", text)) as reader:
        rows = list(reader)
    assert [(r.number, r.line, r.values["firstname"]) for r in rows] == [
        (1, 2, "A"),
        (2, 4, "B"),
        (3, 7, "C"),
    ]


def test_wrong_cell_count_is_a_row_error_and_reading_goes_on(tmp_path: Path) -> None:
    text = "a;b;c\n1;2;3\n1;2\n1;2;3;4\n1;2;3;;\n9;9;9\n"
    with open_input(write(tmp_path / "in.csv", text)) as reader:
        rows = list(reader)
    assert [r.error is None for r in rows] == [True, False, False, True, True]
    assert "2 cells, the header has 3" in (rows[1].error or "")


def test_value_under_unnamed_column_is_a_row_error(tmp_path: Path) -> None:
    text = "a;;b\n1;;2\n1;x;2\n"
    with open_input(write(tmp_path / "in.csv", text)) as reader:
        assert reader.columns == ("a", "b")
        rows = list(reader)
    assert rows[0].values == {"a": "1", "b": "2"}
    assert "no name" in (rows[1].error or "")


def test_duplicate_header_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r'"mail" appears twice.*columns 1 and 3'):
        open_input(write(tmp_path / "in.csv", "mail,firstname,mail\n"))


def test_empty_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no header"):
        open_input(write(tmp_path / "in.csv", ""))


def test_latin1_file_names_line_and_byte_and_suggests_iconv(tmp_path: Path) -> None:
    text = "firstname;city\nJeanne;Paris\nHélène;Orléans\n"
    path = write(tmp_path / "export.csv", text, "cp1252")
    expected_byte = len(b"firstname;city\nJeanne;Paris\nH")
    with pytest.raises(InputFileError) as caught, open_input(path) as reader:
        list(reader)
    error = caught.value
    assert (error.line, error.byte_offset) == (3, expected_byte)
    assert "export.csv" in str(error)
    assert "iconv -f WINDOWS-1252 -t UTF-8 export.csv" in str(error)
    with pytest.raises(InputFileError) as checked:
        check_encoding(path)
    assert (checked.value.line, checked.value.byte_offset) == (3, expected_byte)


def test_check_encoding_across_chunk_boundaries(tmp_path: Path) -> None:
    # A multi-byte character split by the 1 MiB chunk boundary is fine; a bad byte after it
    # is reported at its exact position.
    head = "a" * (1024 * 1024 - 1) + "é\n"
    path = tmp_path / "big.csv"
    path.write_bytes(head.encode() + b"x\xff\n")
    with pytest.raises(InputFileError) as caught:
        check_encoding(path)
    assert caught.value.line == 2
    assert caught.value.byte_offset == len(head.encode()) + 1
    path.write_bytes(head.encode())
    check_encoding(path)


def test_other_encoding_can_be_read_directly(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "firstname\nHélène\n", "cp1252")
    with open_input(path, encoding="cp1252") as reader:
        assert [r.values["firstname"] for r in reader] == ["Hélène"]


def test_utf16_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("firstname\nA\n".encode("utf-16"))
    with pytest.raises(InputFileError, match="UTF-16"):
        open_input(path)
    with pytest.raises(InputFileError, match="UTF-16"):
        check_encoding(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        open_input(tmp_path / "nope.csv")


def test_jsonl_rows_bad_lines_are_row_errors(tmp_path: Path) -> None:
    text = (
        '{"firstname": "A", "address": {"city": "Paris", "postalcode": "01000"}}\n'
        "\n"
        "{not json}\n"
        "[1, 2]\n"
        '{"firstname": "B", "tags": ["x", "y"], "age_category": 2}\n'
    )
    path = write(tmp_path / "in.jsonl", text)
    with open_input(path) as reader:
        assert reader.format == "jsonl"
        assert reader.columns is None
        rows = list(reader)
    assert [(r.number, r.line) for r in rows] == [(1, 1), (2, 3), (3, 4), (4, 5)]
    assert rows[0].values == {
        "firstname": "A",
        "address.city": "Paris",
        "address.postalcode": "01000",
    }
    assert "not valid JSON" in (rows[1].error or "")
    assert "JSON object" in (rows[2].error or "")
    assert rows[3].values["tags"] == ["x", "y"]
    assert rows[3].values["age_category"] == 2


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format("a.CSV") == "csv"
    assert detect_format("a.ndjson") == "jsonl"
    assert detect_format(write(tmp_path / "x.dat", '\ufeff {"a": 1}\n')) == "jsonl"
    assert detect_format(write(tmp_path / "y.dat", "a,b\n")) == "csv"


def test_reading_streams(tmp_path: Path) -> None:
    # The reader consumes the file as rows are asked for: the first row comes out before
    # the file's later lines are read (a later bad byte is not seen yet).
    path = tmp_path / "in.csv"
    path.write_bytes(b"firstname\n" + b"A\n" * 5000 + b"\xff\n")
    with open_input(path) as reader:
        rows = iter(reader)
        assert next(rows).values == {"firstname": "A"}
        with pytest.raises(InputFileError):
            list(rows)
