"""Reading uploaded CSV files: encodings, delimiters, line numbers, refusals, and the
column mapping guessed from the header."""

from __future__ import annotations

import codecs

import pytest

from crm_app.drip.audience.contacts import CUSTOM_FIELD_NAME_MAX
from crm_app.drip.audience.import_files import (
    MAX_COLUMNS,
    ImportFileError,
    guess_mapping,
    read_csv,
)


def test_mapping_is_guessed_from_the_usual_header_names():
    header = ["E-mail Address", "First Name", "Surname", "Company", "Job Title", "Industry",
              "Phone", "Contact Type", "Time zone", "Owner", "Notes"]  # fmt: skip
    assert guess_mapping(header) == [
        "email", "first_name", "last_name", "company", "title", "industry",
        "phone", "contact_type", "timezone", "owner", "notes",
    ]  # fmt: skip


def test_other_columns_become_custom_fields_named_for_merge_fields():
    assert guess_mapping(["email", "Interest", "Préférence 2", "2nd choice", ""]) == [
        "email",
        "custom:interest",
        "custom:preference_2",
        "custom:f_2nd_choice",
        "custom:column_5",
    ]


def test_a_custom_field_named_for_a_long_header_is_cut_to_a_name_a_contact_may_carry():
    long = "How did you first hear about our company and its products " * 2
    assert guess_mapping(["email", long]) == [
        "email",
        "custom:how_did_you_first_hear_about_our_company_and_its_p",
    ]
    assert len(guess_mapping(["email", long])[1].removeprefix("custom:")) <= CUSTOM_FIELD_NAME_MAX


def test_a_second_column_for_a_field_becomes_a_custom_field_and_a_name_column_is_split():
    assert guess_mapping(["Name", "email", "Phone", "Mobile"]) == [
        "full_name",
        "email",
        "phone",
        "custom:mobile",
    ]


def test_our_own_export_columns_map_back_and_its_read_only_ones_are_ignored():
    header = ["id", "email", "owner", "email_status", "created_at", "custom.referrer"]
    assert guess_mapping(header) == ["", "email", "owner", "", "", "custom:referrer"]
    # The failed-rows download starts with the line and the reason: ignored on re-upload.
    assert guess_mapping(["import_line", "import_error", "email"]) == ["", "", "email"]


def test_utf8_with_a_bom_is_read_without_the_mark():
    parsed = read_csv(codecs.BOM_UTF8 + "email,company\nz@x.com,Zoë ☕\n".encode())
    assert parsed.encoding == "UTF-8 (BOM)"
    assert parsed.header == ["email", "company"]  # no "\ufeff" glued to "email"
    assert parsed.rows == [(2, ["z@x.com", "Zoë ☕"])]


def test_utf8_without_a_bom():
    parsed = read_csv("email,company\nz@x.com,Zoë\n".encode())
    assert parsed.encoding == "UTF-8"
    assert parsed.rows[0][1] == ["z@x.com", "Zoë"]


def test_a_windows_1252_latin1_file_is_read_as_such():
    parsed = read_csv("email,company,notes\nm@x.de,Müller & Söhne,5 € café\n".encode("cp1252"))
    assert parsed.encoding == "Windows-1252"
    assert parsed.rows[0][1] == ["m@x.de", "Müller & Söhne", "5 € café"]


def test_latin1_bytes_that_windows_1252_leaves_undefined_still_decode():
    parsed = read_csv(b"email,notes\nm@x.de,a\x81b\xe9\n")
    assert parsed.encoding == "Latin-1"
    assert parsed.rows[0][1] == ["m@x.de", "a\x81bé"]


def test_excel_unicode_text_utf16_is_read():
    parsed = read_csv("email\tcompany\nu@x.com\tÜber\n".encode("utf-16"))
    assert (parsed.encoding, parsed.delimiter) == ("UTF-16", "\t")
    assert parsed.rows[0][1] == ["u@x.com", "Über"]


def test_semicolon_separated_with_commas_inside_values():
    parsed = read_csv("Email;Name;Firma\nh@x.de;Müller, Hans;ACME, GmbH\n".encode())
    assert parsed.delimiter == ";"
    assert parsed.rows == [(2, ["h@x.de", "Müller, Hans", "ACME, GmbH"])]


def test_tab_separated():
    parsed = read_csv(b"email\tfirst name\na@x.com\tAda\n")
    assert parsed.delimiter == "\t"
    assert parsed.header == ["email", "first name"]


def test_a_one_column_list_of_addresses_is_a_csv_too():
    parsed = read_csv(b"email\na@x.com\nb@x.com\n")
    assert parsed.header == ["email"] and len(parsed.rows) == 2


def test_rows_keep_their_line_in_the_file_across_blank_lines_and_quoted_line_breaks():
    text = 'email,notes\r\na@x.com,one\r\n\r\nb@x.com,"two\r\nlines"\r\nc@x.com,three\r\n'
    parsed = read_csv(text.encode())
    assert [line for line, _ in parsed.rows] == [2, 4, 6]
    assert parsed.rows[1][1] == ["b@x.com", "two\r\nlines"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "The file is empty."),
        (b"\r\n \r\n", "The file is empty."),
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet workbook (.xlsx or .xls), not a CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not text (it holds binary data)"),
        (b"ada@example.com,Ada\nbob@example.com,Bob\n", "The first line must name the columns"),
        (b"email,first_name\n", "a header line but no contacts under it"),
        # Past csv's field limit (128 KiB): was a csv.Error out of the delimiter's guess.
        (b"email\n" + b"a" * 200_000 + b"\n", "Line 2 has a cell longer than 131,072"),
    ],
    ids=["empty", "blank lines", "workbook", "binary", "no header", "header only", "huge cell"],
)
def test_a_file_that_cannot_be_imported_says_why(content, message):
    with pytest.raises(ImportFileError) as refused:
        read_csv(content)
    assert message in refused.value.errors["file"]


TOO_LONG = (
    "has a cell longer than 131,072 characters ({:,}), the most one cell may hold. "
    "Shorten it or remove that row, and upload the file again."
)
OPEN_QUOTE = (
    'opens a quote (") that is never closed, so the rest of the file reads as one cell. '
    "Close or remove that quote and upload the file again."
)
# A 2 MB cell without a quote anywhere: not a quote's fault.
LONG_CELL = b"email;notes\na@x.com;ok\nb@x.com;" + b"n" * 2_000_000 + b";\n"
# A quoted cell over several lines, closed: "" is one quote, line breaks count.
LONG_QUOTED_CELL = b'email,notes\na@x.com,"' + b'ab""\r\n' * 40_000 + b'"\n'
# A quote opened on line 3 and never closed: the rest of the file is one cell.
QUOTE_LEFT_OPEN = b'email,notes\na@x.com,ok\nb@x.com,"open\n' + b"c@x.com,fine\n" * 20_000


@pytest.mark.parametrize(
    "content, message",
    [
        (LONG_CELL, "Line 3 " + TOO_LONG.format(2_000_000)),
        (LONG_QUOTED_CELL, "Line 2 " + TOO_LONG.format(200_000)),
        (QUOTE_LEFT_OPEN, "Line 3 " + OPEN_QUOTE),
    ],
    ids=["long cell", "long quoted cell", "open quote"],
)
def test_a_cell_past_the_limit_and_a_quote_left_open_are_told_apart(content, message):
    with pytest.raises(ImportFileError) as refused:
        read_csv(content)
    assert refused.value.errors["file"] == message


def test_a_quote_inside_an_unquoted_cell_is_part_of_it():
    parsed = read_csv(b'email;notes\na@x.com;say "hi"\nb@x.com;fine\n')
    assert parsed.delimiter == ";" and parsed.rows[0][1] == ["a@x.com", 'say "hi"']


def test_a_header_wider_than_a_mapping_page_can_hold_is_refused():
    # 20 MB of commas on one line made a mapping page of gigabytes (a field per column).
    content = b"email" + b",x" * MAX_COLUMNS + b"\na@x.com\n"
    with pytest.raises(ImportFileError) as refused:
        read_csv(content)
    assert refused.value.errors["file"].startswith(
        f"The first line names {MAX_COLUMNS + 1:,} columns; at most {MAX_COLUMNS:,} can be "
    )
    assert len(read_csv(b"email" + b",x" * (MAX_COLUMNS - 1) + b"\na@x.com\n").header) == 1000


def test_a_quote_left_open_in_a_small_file_is_refused_not_read_as_one_cell():
    # The rows after the open quote fit in one cell: csv read them into it, so two
    # contacts were lost in the notes of the first and the file read as 1 row.
    content = b'email,notes\na@x.com,"open\nb@x.com,fine\nc@x.com,fine\n'
    with pytest.raises(ImportFileError) as refused:
        read_csv(content)
    assert refused.value.errors["file"] == "Line 2 " + OPEN_QUOTE


def test_a_quoted_cell_over_several_lines_at_the_end_of_the_file_is_read():
    parsed = read_csv(b'email,notes\na@x.com,ok\nb@x.com,"two\nlines"')
    assert parsed.rows[-1] == (3, ["b@x.com", "two\nlines"])
