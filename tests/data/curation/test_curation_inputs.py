"""Reading: every input format, and bad input (empty, missing, not JSON, no text column, binary): a clear message,
a count in the report, and no lost documents (each input record is kept or listed in removed.jsonl)."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from scratchllm.data.curation.config import ReadConfig
from scratchllm.data.curation.documents import Document, Removal
from scratchllm.data.curation.readers import iter_records, resolve_inputs
from scratchllm.errors import DataError

from .conftest import kept_ids, read_jsonl, write_jsonl

# minimal filters: this file is about reading, not about what the later stages think of the text
MINIMAL = ["prepare=minimal", "near_dedup.enabled=false", "tokenizer=char", "keep_text=true"]
PROSE = ("The river ran quietly past the mill, and the miller counted his sacks of grain twice before the market "
         "opened. ")


def _doc(i: int) -> str:
    return f"Document {i}. " + PROSE * (1 + i % 3) + f"It ended with the number {i * 7919}."


def test_formats_and_ids(tmp_path, run_prepare) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_jsonl(d / "a.jsonl", [{"id": "j1", "text": _doc(1)}, {"text": _doc(2)}])  # second: id = path:line
    with gzip.open(d / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "g1", "body": _doc(3)}) + "\n" + json.dumps({"id": "g2", "body": _doc(9)}) + "\n")
    (d / "c.json").write_text(json.dumps([{"id": "a1", "text": _doc(4)}, {"text": _doc(5)}]), encoding="utf-8")
    (d / "d.txt").write_text(_doc(6), encoding="utf-8")
    pq.write_table(pa.table({"text": [_doc(7), _doc(8)], "id": ["p1", None]}), d / "e.parquet")
    (d / "ignored.csv").write_text("not picked up from a folder")

    res = run_prepare(f"input={d}", *MINIMAL)
    ids = kept_ids(res)
    assert "g1" not in ids  # text is under "body": removed at read, named in removed.jsonl
    removed = read_jsonl(res.output / "removed.jsonl")
    assert [(r["id"], r["stage"], r["reason"]) for r in removed] == [("g1", "read", "missing_text_field"),
                                                                     ("g2", "read", "missing_text_field")]
    assert ids == {"j1", f"{d / 'a.jsonl'}:2", "a1", f"{d / 'c.json'}:1", str(d / "d.txt"), "p1",
                   f"{d / 'e.parquet'}:1"}

    res2 = run_prepare(f"input={d}/**/*.jsonl*", *MINIMAL, "read.text_field=body", "read.id_field=nope",
                       output="out2")
    gz = d / "sub" / "b.jsonl.gz"
    assert kept_ids(res2) == {f"{gz}:1", f"{gz}:2"}  # a glob; another text field; a missing id field
    assert res2.report["stages"][0]["removed"] == {"missing_text_field": 2}


def test_missing_and_empty_input(tmp_path, run_prepare) -> None:
    with pytest.raises(DataError, match="no input files match .*nowhere"):
        run_prepare(f"input={tmp_path / 'nowhere' / '*.jsonl'}", *MINIMAL)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="holds no"):
        run_prepare(f"input={tmp_path / 'empty_dir'}", *MINIMAL)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="the input holds no documents"):
        run_prepare(f"input={tmp_path / 'empty.jsonl'}", *MINIMAL)
    assert not (tmp_path / "out").exists() or not (tmp_path / "out" / "manifest.json").exists()
    (tmp_path / "blank.txt").write_text("  \n\t\n")
    with pytest.raises(DataError, match="removed: 1 empty"):
        run_prepare(f"input={tmp_path / 'blank.txt'}", *MINIMAL, output="out_blank")
    # the report still says why
    assert json.loads((tmp_path / "out_blank" / "report.json").read_text())["stages"][1]["removed"] == {"empty": 1}


def test_bad_records_are_counted_not_fatal(tmp_path, run_prepare, caplog) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = tmp_path / "in"
    d.mkdir()
    good = [{"id": f"ok{i}", "text": _doc(i)} for i in range(6)]
    write_jsonl(d / "a.jsonl", [good[0], "{not json", good[1], "[1, 2]", {"id": "n", "text": 5}, good[2],
                                {"id": "missing"}, good[3], good[4], good[5]])
    pq.write_table(pa.table({"content": ["x", "y", "z"]}), d / "no_text.parquet")
    (d / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "latin1.txt").write_bytes("Caf\xe9 au lait. ".encode("latin-1") * 5 + PROSE.encode())
    (d / "fake.parquet").write_bytes(b"this is not parquet")
    with caplog.at_level(logging.WARNING):
        res = run_prepare(f"input={d}", *MINIMAL, "read.extensions=[.jsonl,.parquet,.txt]")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "is not JSON" in messages and "no 'text' column (columns: content)" in messages
    assert "looks binary" in messages and "not a readable Parquet file" in messages

    read = res.report["stages"][0]
    assert read["removed"] == {"invalid_json": 1, "not_an_object": 1, "text_not_a_string": 1,
                               "missing_text_field": 2, "binary_file": 1, "unreadable_parquet": 1}
    assert read["documents_in"] == 10 + 1 + 1 + 1 + 1 and read["documents_out"] == 7
    removed = read_jsonl(res.output / "removed.jsonl")
    assert {r["id"] for r in removed} == {f"{d / 'a.jsonl'}:2", f"{d / 'a.jsonl'}:4", "n", "missing",
                                          str(d / "no_text.parquet"), str(d / "blob.txt"), str(d / "fake.parquet")}
    # no lost documents: every record is kept or removed, exactly once
    assert kept_ids(res) == {f"ok{i}" for i in range(6)} | {str(d / "latin1.txt")}
    assert len(removed) + len(kept_ids(res)) == read["documents_in"] == res.report["documents_in"]
    # undecodable bytes: replaced and counted, not fatal
    assert res.report["stages"][1]["notes"]["undecodable byte sequences"] == 5
    md = (res.output / "report.md").read_text()
    assert "**invalid_json**: 1 removed" in md and "{not json" in md


def test_reader_units(tmp_path) -> None:
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n\n{"text": "b", "id": 7}\n', encoding="utf-8")
    recs = list(iter_records(resolve_inputs([str(tmp_path / "x.jsonl")], ReadConfig()), ReadConfig()))
    assert recs == [Document(f"{tmp_path / 'x.jsonl'}:1", "a"), Document("7", "b")]  # blank lines are not records
    # max_documents stops early; a single JSON object is one document with the file's path as id
    (tmp_path / "o.json").write_text('{"text": "solo"}')
    cfg = ReadConfig(max_documents=1)
    assert len(list(iter_records(resolve_inputs([str(tmp_path)], ReadConfig()), cfg))) == 1
    only = list(iter_records([tmp_path / "o.json"], ReadConfig()))
    assert only == [Document(str(tmp_path / "o.json"), "solo")]
    assert isinstance(list(iter_records([tmp_path / "x.jsonl"], ReadConfig(text_field="t")))[0], Removal)


def test_missing_pyarrow_and_datasets_messages(tmp_path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("pyarrow", "datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="needs pyarrow; pip install pyarrow"):
        list(iter_records([tmp_path / "t.parquet"], ReadConfig()))
    with pytest.raises(DataError, match="needs the 'datasets' package; pip install datasets"):
        list(iter_records(resolve_inputs(["hf:some/dataset"], ReadConfig()), ReadConfig()))
