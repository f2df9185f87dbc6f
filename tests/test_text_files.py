"""Text files as spreadsheets, databases and scrapers write them (issue: reliability and security, second round):
byte-order marks and UTF-16, Windows line ends, quoted newlines and delimiters, long cells, ';' separators and
Excel's ``sep=`` line, duplicate or padded headers, empty or whitespace-only cells, rows with too many fields,
JSON Lines with numbers and nulls. What can be read is read exactly; what cannot is one line naming the file and
line; a skipped row is counted in a warning, never dropped silently. ``read_table`` is what text_csv and
tl-predict share, so it is tested directly; the datamodule cases go through text_csv."""

import codecs
import json
import logging

import pytest
from omegaconf import OmegaConf

from tl_lightning.errors import DataError
from tl_lightning.tables import read_table, read_text_file

ROWS = [("good film, loved it", "pos"), ("bad film; hated it", "neg"), ('a "so-so" film', "pos")]


def csv_text(rows=ROWS, header="text,label", sep=",", newline="\n"):
    def cell(value):
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in f'{sep}"\n\r') else value

    return newline.join([header.replace(",", sep)] + [sep.join(cell(v) for v in row) for row in rows]) + newline


@pytest.mark.parametrize("encoding,newline", [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-16", "\r\n"),
                                              ("utf-16-be", "\n"), ("utf-32", "\n")],
                         ids=["utf8", "utf8_bom_crlf", "utf16_le_bom", "utf16_be_bom", "utf32_bom"])
def test_every_unicode_encoding_with_its_mark_reads_the_same_table(tmp_path, encoding, newline):
    path = tmp_path / "t.csv"
    data = csv_text(newline=newline).encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path.write_bytes(data)
    table = read_table(str(path), ["text", "label"])
    assert table["text"] == [r[0] for r in ROWS] and table["label"] == [r[1] for r in ROWS]
    assert table["_where"] == [f"{path}:2", f"{path}:3", f"{path}:4"]


def test_a_windows_spreadsheets_cp1252_export_is_one_line_saying_how_to_convert(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\ncaf\u00e9 au lait,pos\n".encode("cp1252"))
    with pytest.raises(DataError) as info:
        read_table(str(path), ["text", "label"])
    assert str(info.value) == (f"{path}: line 2 is not UTF-8 text (bytes b'\\xe9 au' at offset 14); convert the file "
                               "to UTF-8 (e.g. iconv -f cp1252 -t utf-8, for a Windows spreadsheet's export)")


def test_quoted_cells_keep_their_newlines_delimiters_quotes_and_control_characters(tmp_path):
    rows = [("first line\nsecond line", "pos"), ("a, b; c", "neg"), ("form\x0cfeed and \u2028 separator", "pos")]
    path = tmp_path / "t.csv"
    path.write_text(csv_text(rows), newline="")
    table = read_table(str(path), ["text", "label"])
    assert table["text"] == [r[0] for r in rows]
    assert table["_where"] == [f"{path}:2", f"{path}:4", f"{path}:5"]  # the line each row starts on


def test_a_cell_longer_than_the_csv_modules_limit_is_read(tmp_path):
    long = "word " * 60_000  # 300 kB in one cell; Python's csv stops at 128 KiB by default
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(long, "pos"), ("short", "neg")]))
    assert read_table(str(path), ["text", "label"])["text"][0] == long


@pytest.mark.parametrize("content", ["text;label\ngood film;pos\nbad, sad film;neg\n",
                                     "sep=;\ntext;label\ngood film;pos\nbad, sad film;neg\n"],
                         ids=["semicolons", "excel_sep_line"])
def test_semicolon_separated_exports_are_recognised(tmp_path, content):
    path = tmp_path / "t.csv"
    path.write_text(content)
    table = read_table(str(path), ["text", "label"])
    assert table["text"] == ["good film", "bad, sad film"] and table["label"] == ["pos", "neg"]


def test_headers_are_stripped_and_a_duplicated_wanted_column_is_one_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(" text , label ,note\ngood,pos,x\n")
    assert read_table(str(path), ["text", "label"])["label"] == ["pos"]
    path.write_text("text,label,text\ngood,pos,other\n")
    with pytest.raises(DataError, match=r"the header names column 'text' 2 times \(fields 1, 3\)"):
        read_table(str(path), ["text", "label"])
    path.write_text("text,label,note,note\ngood,pos,a,b\n")  # a duplicate the run does not read is harmless
    assert read_table(str(path), ["text", "label"])["text"] == ["good"]


def test_rows_with_another_number_of_fields_and_empty_rows_are_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text("text,label\ngood,pos\ngood, really good,pos\n,\n\nbad,neg\nshort\n,,\n")
    with caplog.at_level(logging.WARNING):
        table = read_table(str(path), ["text", "label"])
    assert table["text"] == ["good", "bad"] and table["_where"] == [f"{path}:2", f"{path}:6"]
    assert "skipped 2 row(s) whose number of fields is not the header's 2 (an unquoted ',' in a text?), e.g. line 3" \
        in caplog.text


def test_broken_quoting_and_binary_content_are_one_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"text\tlabel\ngood\tpos\nbad\x00film\tneg\n")
    with pytest.raises(DataError, match="a NUL byte on line 3: a binary file, not text"):
        read_table(str(path), ["text", "label"])
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"unclosed quote,pos\n')
    table_or_error = None
    try:
        table_or_error = read_table(str(path), ["text", "label"])
    except DataError as exc:
        table_or_error = str(exc)
    # an unclosed quote swallows the rest of the file into one field: that row has too few fields and is skipped
    assert table_or_error == {"text": [], "label": [], "_where": []} or "check its quoting" in table_or_error


def test_json_lines_numbers_booleans_and_nulls_are_text_and_lists_are_one_line(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"text": "good", "label": 5}, {"text": "bad", "label": True}, {"text": "none", "label": None},
            {"text": "odd\u2028line", "label": 1.5}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    table = read_table(str(path), ["text", "label"])
    assert table["label"] == ["5", "true", "", "1.5"] and table["text"][3] == "odd\u2028line"
    path.write_text(json.dumps({"text": ["a", "list"], "label": 1}) + "\n")
    with pytest.raises(DataError, match=r"t.jsonl:1: 'text' holds a JSON list, not a text or a label"):
        read_table(str(path), ["text", "label"])


def test_a_text_file_keeps_its_text_without_the_mark_and_the_carriage_returns(tmp_path):
    path = tmp_path / "note.txt"
    path.write_bytes(codecs.BOM_UTF8 + "line one\r\nline two\r\n".encode())
    assert read_text_file(str(path)) == "line one\nline two\n"


# ---------------------------------------------------------------- through the text_csv datamodule

@pytest.fixture(scope="module")
def prep():
    from tl_lightning.backbones.registry import build_backbone

    return build_backbone(OmegaConf.create({"kind": "minilm", "name": "all-MiniLM-L6-v2", "max_length": 16}),
                          pretrained=True).preprocessing


def text_csv(prep, path, **kw):
    from tl_lightning.config.schema import TextCsvDataConf
    from tl_lightning.data import build_datamodule

    cfg = OmegaConf.merge(OmegaConf.structured(TextCsvDataConf), {"name": "text_csv", "path": str(path), **kw})
    dm = build_datamodule(cfg, prep)
    dm.setup("fit")
    return dm


def test_rows_with_an_empty_label_are_skipped_and_counted_not_a_class(prep, tmp_path, caplog):
    rows = [(f"good film {k}", "pos ") for k in range(12)] + [(f"bad film {k}", "neg") for k in range(12)]
    rows += [("no label here", ""), ("nor here", "   ")]
    path = tmp_path / "t.csv"
    path.write_text(csv_text(rows))
    with caplog.at_level(logging.WARNING):
        dm = text_csv(prep, path)
    assert dm.class_names == ["neg", "pos"]  # labels stripped; no class named ''
    assert sum(dm.split_info["sizes"].values()) == 24
    assert f"{path}: skipped 2 row(s) with an empty 'label' (data.label_column), e.g. {path}:26" in caplog.text


def test_a_few_empty_labels_are_not_blamed_on_the_validation_split(prep, tmp_path):
    """Three unlabelled rows once made a class '' of three samples, and the error blamed the val split."""
    rows = [(f"good film {k}", "pos") for k in range(12)] + [(f"bad film {k}", "neg") for k in range(12)]
    path = tmp_path / "t.csv"
    path.write_text(csv_text(rows + [("x", ""), ("y", ""), ("z", "")]))
    assert text_csv(prep, path).class_names == ["neg", "pos"]
