"""Reading an uploaded CSV file: its encoding, its delimiter, its rows with their line
numbers, and the column mapping guessed from its header. No database in here."""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from dataclasses import dataclass

from crm_app.drip.audience.contacts import CUSTOM_FIELD_NAME_MAX
from crm_app.drip.common.errors import FieldErrors

# What a column can become: a contact field ("" ignores the column; "custom:<key>"
# makes it a custom field). full_name is split into first and last name.
FIELD_TARGETS: dict[str, str] = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "full_name": "Full name (first + last)",
    "company": "Company",
    "title": "Title",
    "industry": "Industry",
    "phone": "Phone",
    "contact_type": "Type",
    "timezone": "Time zone",
    "owner": "Owner (a user's email or name)",
    "notes": "Notes",
}
CUSTOM_PREFIX = "custom:"
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
PREVIEW_ROWS = 5
# The mapping page has a form field per column: a one-line file of 20 MB of commas made
# a page of gigabytes. Wide CRM exports stay well under this.
MAX_COLUMNS = 1_000

# Header names (lower case, letters and digits only) that say which field a column is.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "workemail", "businessemail", "primaryemail"),
    "first_name": ("firstname", "first", "givenname", "forename", "fname"),
    "last_name": ("lastname", "last", "surname", "familyname", "lname"),
    "full_name": ("name", "fullname", "contactname"),
    "company": ("company", "companyname", "organization", "organisation", "account", "employer"),
    "title": ("title", "jobtitle", "position", "role"),
    "industry": ("industry", "sector"),
    "phone": ("phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone", "cell"),
    "contact_type": ("type", "contacttype"),
    "timezone": ("timezone", "tz", "zone"),
    "owner": ("owner", "owneremail", "contactowner", "accountowner", "assignedto"),
    "notes": ("notes", "note", "comments", "comment", "description"),
}
_FIELD_BY_NAME = {name: field for field, names in _SYNONYMS.items() for name in names}
# Columns of our own export (and of the failed-rows file) that are not contact input.
_IGNORED_NAMES = {"id", "emailstatus", "createdat", "updatedat", "importline", "importerror"}
# Our export names custom fields "custom.<key>": a re-import maps them back.
_EXPORTED_CUSTOM = re.compile(r"^custom\.(\w+)$", re.ASCII)
_LOOKS_LIKE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LINE_END = re.compile(r"\r\n|\r|\n")


class ImportFileError(FieldErrors):
    """The uploaded file cannot be imported; the message says why (field "file")."""

    def __init__(self, message: str):
        super().__init__({"file": message})


@dataclass
class CsvFile:
    encoding: str
    delimiter: str
    header: list[str]
    # (line number in the file, cells) per non-blank data row; line 1 is the header.
    rows: list[tuple[int, list[str]]]


def decode(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding: UTF-8 (with or without BOM), UTF-16 with
    a BOM (Excel's "Unicode text"), else Windows-1252 (Latin-1 for its 5 unused bytes)."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "UTF-8 (BOM)"
        except UnicodeDecodeError:
            data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            pass
    for codec, label in (("utf-8", "UTF-8"), ("cp1252", "Windows-1252")):
        try:
            return data.decode(codec), label
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "Latin-1"


def sniff_delimiter(text: str) -> str:
    """The delimiter among , ; and tab that splits the header into the most columns
    while the next lines agree with it; a one-column file (a list of addresses) is ","."""
    # A line past csv's field limit would refuse every delimiter: read_csv says which.
    limit = csv.field_size_limit()
    sample = [line for line in text.splitlines()[:50] if line.strip() and len(line) <= limit]
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = list(csv.reader(sample, delimiter=delimiter))
        except csv.Error:  # a quoted cell past the limit over several lines
            continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        rest = records[1:]
        agreeing = sum(1 for r in rest if len(r) == width) / len(rest) if rest else 1.0
        score = (agreeing, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _refuse_non_text(data: bytes) -> None:
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportFileError(
            "This is a spreadsheet workbook (.xlsx or .xls), not a CSV file. In your "
            'spreadsheet, use "Save as" or "Download as" CSV and upload that file.'
        )


def read_csv(data: bytes) -> CsvFile:
    """Parse the whole file, or raise ImportFileError saying what is wrong with it."""
    if not data.strip():
        raise ImportFileError("The file is empty.")
    _refuse_non_text(data)
    text, encoding = decode(data)
    if "\x00" in text:
        raise ImportFileError(
            "This file is not text (it holds binary data), so it is not a CSV file. "
            "Export your contacts as CSV and upload that file."
        )
    delimiter = sniff_delimiter(text)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    first_line = last_line = 0
    try:
        for cells in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip() for cell in cells]
            else:
                rows.append((first_line, cells))
    except csv.Error as error:
        raise ImportFileError(_unreadable(text, last_line + 1, delimiter, error)) from None
    # csv ends a quote left open at the end of the file without a word: the rows after
    # it were read as one cell of the last record, and would be lost in it.
    if header is not None and _scan_record(text, _line_start(text, first_line), delimiter)[0]:
        raise ImportFileError(_open_quote(first_line))
    if header is None:
        raise ImportFileError("The file is empty.")
    _check_header(header)
    if not rows:
        raise ImportFileError("The file has a header line but no contacts under it.")
    return CsvFile(encoding=encoding, delimiter=delimiter, header=header, rows=rows)


def _unreadable(text: str, line: int, delimiter: str, error: csv.Error) -> str:
    """Why the record starting on `line` cannot be read: a quote that is never closed (the
    rest of the file became one cell), a cell past csv's field limit, or csv's words."""
    quote_open, longest = _scan_record(text, _line_start(text, line), delimiter)
    if quote_open:
        return _open_quote(line)
    limit = csv.field_size_limit()
    if longest > limit:
        return (
            f"Line {line} has a cell longer than {limit:,} characters ({longest:,}), the "
            "most one cell may hold. Shorten it or remove that row, and upload the file again."
        )
    return f"Line {line} cannot be read as CSV ({error})."


def _open_quote(line: int) -> str:
    return (
        f'Line {line} opens a quote (") that is never closed, so the rest of the file '
        "reads as one cell. Close or remove that quote and upload the file again."
    )


def _line_start(text: str, line: int) -> int:
    """Where `line` starts in `text` (1-based; a line ends as csv counts: LF, CR LF or CR)."""
    offset = 0
    for _ in range(line - 1):
        end = _LINE_END.search(text, offset)
        if end is None:
            return len(text)
        offset = end.end()
    return offset


def _scan_record(text: str, start: int, delimiter: str) -> tuple[bool, int]:
    """(a quote is still open at the end of the text, the longest cell's length) of the
    record starting at `start`, read as csv's default dialect reads it: a quote opens a
    cell only at its start, and "" inside a quoted cell is one quote."""
    special = re.compile(f'["\r\n{re.escape(delimiter)}]')
    position, cell, longest, in_quotes, at_cell_start = start, 0, 0, False, True
    while True:
        found = special.search(text, position)
        end = len(text) if found is None else found.start()
        cell += end - position
        at_cell_start = at_cell_start and end == position
        if found is None:
            return in_quotes, max(longest, cell)
        char, position = found.group(), end + 1
        if char == '"' and in_quotes:
            if text.startswith('"', position):  # "" is a quote inside the cell
                cell, position = cell + 1, position + 1
            else:
                in_quotes = False
        elif char == '"':
            in_quotes, cell = at_cell_start, cell + (not at_cell_start)
        elif in_quotes:
            cell += 1  # a delimiter or a line break inside a quoted cell
        elif char == delimiter:
            longest, cell = max(longest, cell), 0
        else:  # the record's line break
            return False, max(longest, cell)
        at_cell_start = char == delimiter and not in_quotes


def _check_header(header: list[str]) -> None:
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(
            f"The first line names {len(header):,} columns; at most {MAX_COLUMNS:,} can be "
            "imported. Remove the columns you do not need (or check that the file's lines "
            "are not all on one line) and upload it again."
        )
    data_like = next((cell for cell in header if _LOOKS_LIKE_EMAIL.match(cell)), None)
    if data_like is not None:
        raise ImportFileError(
            "The first line must name the columns (for example: email, first name, "
            f'company), but it holds data ("{data_like}"). Add a header line and upload '
            "the file again."
        )


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def custom_key(name: str, position: int) -> str:
    """A custom field name for a column: ASCII letters, digits and underscores, as merge
    fields need (`{{ contact.custom.key }}`)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if not key:
        return f"column_{position + 1}"
    key = f"f_{key}" if key[0].isdigit() else key
    # Cut to the longest name a contact may carry, so the guess can be saved as it is.
    return key[:CUSTOM_FIELD_NAME_MAX].rstrip("_")


def guess_target(name: str, position: int) -> str:
    """What a column named `name` most likely holds: a field, a custom field, or ""."""
    exported = _EXPORTED_CUSTOM.match(name.strip())
    if exported:
        return CUSTOM_PREFIX + exported.group(1)
    normalized = _normalized(name)
    if normalized in _IGNORED_NAMES:
        return ""
    field = _FIELD_BY_NAME.get(normalized) or _FIELD_BY_NAME.get(normalized.removeprefix("contact"))
    return field or CUSTOM_PREFIX + custom_key(name, position)


def guess_mapping(header: list[str]) -> list[str]:
    """A target per column. Each field is taken by the first column that names it; a
    later one (a second phone column) becomes a custom field, so no data is dropped."""
    taken: set[str] = set()
    mapping = []
    for position, name in enumerate(header):
        target = guess_target(name, position)
        if not target:
            mapping.append(target)
            continue
        if target in taken:
            target = CUSTOM_PREFIX + custom_key(name, position)
        if target in taken:  # two columns with the same name: keep both apart
            target = f"{target}_{position + 1}"
        taken.add(target)
        mapping.append(target)
    return mapping
