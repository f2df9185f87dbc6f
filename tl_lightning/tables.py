"""Reading text files and tables as spreadsheets, databases and scrapers write them: UTF-8/16/32 with or without a
byte-order mark, CSV/TSV with quoted newlines, ``;`` and Excel's ``sep=`` line, JSON Lines. The text datamodules
and tl-predict share it; it imports nothing heavy (no torch, no Lightning), so a command that only reads a table
starts fast."""

import codecs
import csv
import io
import json
import logging
from typing import Dict, List, Optional, Sequence, Tuple

from tl_lightning.errors import DataError

log = logging.getLogger(__name__)


BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # UTF-32 LE starts as UTF-16 LE


def read_text_file(path: str) -> str:
    """A text file as spreadsheets and editors save it: UTF-8, or UTF-8/16/32 with its byte-order mark (removed).
    Anything else is one DataError naming the file: binary content (a NUL byte), or bytes that are not UTF-8
    (with the line, the bytes, and how to convert)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    encoding = "utf-8"
    for bom, name in BOMS:
        if raw.startswith(bom):
            raw, encoding = raw[len(bom):], name
            break
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not {encoding.upper()} text (bytes {raw[exc.start:exc.start + 4]!r} at "
                        f"offset {exc.start}); convert the file to UTF-8 (e.g. iconv -f cp1252 -t utf-8, for a "
                        "Windows spreadsheet's export)") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{path}: a NUL byte on line {line}: a binary file, not text")
    return text.replace("\r\n", "\n")


csv.field_size_limit(2**31 - 1)  # a long document in one cell is a text, not an error (the default is 128 KiB)


def _read_jsonl(path: str, text: str) -> Tuple[List[dict], List[int], List[str]]:
    rows: List[dict] = []
    lines: List[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
        lines.append(number)
    return rows, lines, sorted({k for row in rows for k in row})


def _read_delimited(path: str, text: str, wanted: Sequence[str]) -> Tuple[List[dict], List[int], List[str], int]:
    """Rows of a CSV / TSV as spreadsheets and databases write them: quoted fields may hold newlines and
    delimiters, header names are stripped, a header that names a wanted column twice is an error, rows whose
    number of fields differs from the header's are skipped and counted (returned last), an Excel ``sep=;`` first
    line is honoured, and a ``;``-separated file is recognised by its header."""
    delimiter = "\t" if path.endswith((".tsv", ".tab")) else ","
    first = text.split("\n", 1)[0].strip()
    if first.lower().startswith("sep=") and len(first) == 5:
        delimiter, text = first[4], text.split("\n", 1)[1] if "\n" in text else ""
    elif delimiter == "," and first.count(";") and not set(wanted) <= {h.strip() for h in first.split(",")} \
            and set(wanted) <= {h.strip().strip('"') for h in first.split(";")}:
        delimiter = ";"
        log.info("%s: fields separated by ';' (read from its header)", path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader, [])]
        for column in wanted:
            where = [k + 1 for k, h in enumerate(header) if h == column]
            if len(where) > 1:
                raise DataError(f"{path}: the header names column '{column}' {len(where)} times (fields "
                                f"{', '.join(map(str, where))}); rename the copies so that one is meant")
        rows, lines, malformed, first_bad = [], [], 0, 0
        start = reader.line_num + 1
        for fields in reader:
            if not any(f.strip() for f in fields):  # an empty row, e.g. a spreadsheet's trailing ",,,"
                start = reader.line_num + 1
                continue
            if len(fields) != len(header):
                malformed += 1
                first_bad = first_bad or start
            else:
                rows.append(dict(zip(header, fields)))
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} cannot be read as {'TSV' if delimiter == chr(9) else 'CSV'} "
                        f"({exc}); check its quoting") from None
    if malformed:
        log.warning("%s: skipped %d row(s) whose number of fields is not the header's %d (an unquoted '%s' in a "
                    "text?), e.g. line %d", path, malformed, len(header), delimiter, first_bad)
    return rows, lines, header, malformed


def read_table(path: str, columns: Sequence[Optional[str]]) -> Dict[str, List[str]]:
    """The named columns of a CSV, TSV (by extension) or JSON Lines file, with each row's file:line (the line a
    row starts on). Cells are strings (JSON numbers and booleans as their text, null as empty)."""
    text = read_text_file(path)
    wanted = [c for c in columns if c]
    if path.endswith((".jsonl", ".ndjson")):
        rows, lines, found = _read_jsonl(path, text)
    else:
        rows, lines, found, _ = _read_delimited(path, text, wanted)
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataError(f"{path}: no column {', '.join(repr(c) for c in missing)}; columns found: "
                        f"{', '.join(found) or '(none)'}")
    out: Dict[str, List[str]] = {}
    for c in wanted:
        values = []
        for row, line in zip(rows, lines):
            value = row.get(c)
            if isinstance(value, (dict, list)):
                raise DataError(f"{path}:{line}: '{c}' holds a JSON {type(value).__name__}, not a text or a label")
            values.append("" if value is None else json.dumps(value) if isinstance(value, bool) else str(value))
        out[c] = values
    out["_where"] = [f"{path}:{n}" for n in lines]
    return out
