"""Hostile input for prepare (#13): whatever the bytes, the run finishes and every record is either kept or listed
in removed.jsonl with a reason. Lone surrogates, a corrupt or truncated .gz (the readable part is kept), a 50 MB
line (read in bounded memory), ``"text": null``; and a failed run names a report.md that exists."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest

from scratchllm.data.curation.config import ReadConfig
from scratchllm.data.curation.documents import Document, Removal
from scratchllm.data.curation.readers import iter_records
from scratchllm.errors import DataError

from .conftest import kept_ids, read_jsonl, write_jsonl

MINIMAL = ["prepare=minimal", "near_dedup.enabled=false", "tokenizer=gpt2", "keep_text=true"]


def _doc(i: int) -> str:
    return f"Document number {i} tells of the river and the mill, and of {i * 7919} sacks of grain counted twice."


def _accounted(res) -> tuple[set[str], list[dict]]:
    """Kept ids and removed lines, after checking that together they account for every record read."""
    removed = read_jsonl(res.output / "removed.jsonl")
    kept = kept_ids(res)
    assert res.report["balanced"] and len(kept) + len(removed) == res.report["documents_in"]
    return kept, removed


def test_lone_surrogates_are_replaced_and_counted(tmp_path, run_prepare) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, [
        {"id": "ok", "text": _doc(1)},
        r'{"id": "lone", "text": "half a pair \ud800 here. ' + _doc(2) + '"}',  # a JSON escape: no UTF-8 holds it
        r'{"id": "id\udfff", "text": "' + _doc(3) + '"}',  # in the id
        r'{"id": "keys", "b\ud800dy": "no text field"}',  # in a field name (shown in removed.jsonl)
        r'{"id": "pair", "text": "a real pair \ud83d\ude00 stays. ' + _doc(4) + '"}',
    ])
    res = run_prepare(f"input={path}", *MINIMAL)  # before: UnicodeEncodeError writing curated.jsonl
    kept, removed = _accounted(res)
    assert kept == {"ok", "lone", "id\ufffd", "pair"}
    assert [(r["id"], r["reason"]) for r in removed] == [("keys", "missing_text_field")]
    assert "b\ufffddy" in removed[0]["detail"]
    texts = {r["id"]: r["text"] for r in read_jsonl(res.output / "curated.jsonl")}
    assert "half a pair \ufffd here." in texts["lone"] and "\U0001f600" in texts["pair"]
    assert res.report["stages"][1]["notes"]["undecodable byte sequences"] == 1  # the one in a text


def _corrupt_gzip(lines: list[str]) -> bytes:
    """A .gz whose deflate stream is sound for the first half of ``lines``, then holds an invalid block."""
    co = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    half = len(lines) // 2
    good = co.compress(("\n".join(lines[:half]) + "\n").encode()) + co.flush(zlib.Z_FULL_FLUSH)  # byte-aligned
    rest = co.compress("\n".join(lines[half:]).encode()) + co.flush()
    header = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff"
    return header + good + b"\xff" + rest  # 0xff: a final block of the reserved type 3, "invalid block type"


def test_corrupt_gzip_keeps_the_readable_part(tmp_path, run_prepare) -> None:
    lines = [json.dumps({"id": f"d{i}", "text": _doc(i)}) for i in range(400)]
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(_corrupt_gzip(lines))
    with pytest.raises(zlib.error):  # the file really is broken midway
        gzip.decompress(path.read_bytes())
    res = run_prepare(f"input={path}", *MINIMAL)  # before: zlib.error ended the run
    kept, removed = _accounted(res)
    # the lines before the damage, but for the piece the stream broke in (zlib gives nothing of that one)
    assert 100 <= len(kept) <= 200 and kept == {f"d{i}" for i in range(len(kept))}
    (rest,) = removed
    assert rest["reason"] == "unreadable_rest" and rest["id"] == f"{path}:{len(kept) + 1}"
    assert "zlib.error" in rest["detail"] and f"lines 1-{len(kept)}" in rest["detail"]


def test_truncated_and_corrupt_compressed_text(tmp_path) -> None:
    text = "".join(_doc(i) + "\n" for i in range(2000))
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(text.encode(), mtime=0)[:-200])  # cut short
    (tmp_path / "c.txt.gz").write_bytes(_corrupt_gzip(text.splitlines()))
    (tmp_path / "j.json.gz").write_bytes(gzip.compress(json.dumps([{"text": text}]).encode())[:-50])
    (tmp_path / "bad.gz.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")  # broken from the first byte
    recs = list(iter_records(sorted(tmp_path.iterdir()), ReadConfig()))
    by_id = {r.id: r for r in recs}
    assert isinstance(by_id[str(tmp_path / "bad.gz.jsonl.gz")], Removal)
    assert by_id[str(tmp_path / "bad.gz.jsonl.gz")].reason == "unreadable_file"
    for name in ("t.txt.gz", "c.txt.gz"):  # the readable start is a document, the rest one removal
        doc, rest = by_id[str(tmp_path / name)], by_id[f"{tmp_path / name}:rest"]
        assert isinstance(doc, Document) and text.startswith(doc.text.rstrip("\ufffd")) and len(doc.text) > 1000
        assert rest.reason == "unreadable_rest"
    assert by_id[str(tmp_path / "j.json.gz")].reason == "unreadable_file"  # half a JSON document is nothing


def test_a_50_mb_line_is_read_in_bounded_memory(tmp_path, run_prepare) -> None:
    path = tmp_path / "big.jsonl"
    huge = '{"id": "huge", "text": "' + "x" * 50_000_000 + '"}\n'
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "text": _doc(1)}) + "\n" + huge + json.dumps({"id": "b", "text": _doc(2)}) + "\n")
    size, huge = len(huge), None
    for limit_mb, bound in ((16, 40_000_000), (1, 4_000_000)):  # bounded by the limit (readline: ~2x), not the line
        tracemalloc.start()
        try:
            recs = list(iter_records([path], ReadConfig(max_record_mb=limit_mb)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < bound, (limit_mb, peak)
        assert [(r.id, type(r).__name__) for r in recs] == [("a", "Document"), (f"{path}:2", "Removal"),
                                                             ("b", "Document")]
        assert recs[1].reason == "record_too_long" and recs[1].nbytes == size
    # through the whole run, with a limit that a smaller line also exceeds
    res = run_prepare(f"input={path}", *MINIMAL, "read.max_record_mb=1")
    kept, removed = _accounted(res)
    assert kept == {"a", "b"} and [r["reason"] for r in removed] == ["record_too_long"]
    assert "read.max_record_mb" in removed[0]["detail"]


def test_null_text_is_not_called_missing(tmp_path, run_prepare) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "n.jsonl", [{"id": "null", "text": None}, {"id": "gone", "body": "x"},
                                       {"id": "a", "text": _doc(1)}, {"id": "b", "text": _doc(2)}])
    pq.write_table(pa.table({"text": [None, _doc(3)], "id": ["pnull", "p"]}), tmp_path / "n.parquet")
    res = run_prepare(f"input={tmp_path}", *MINIMAL)
    kept, removed = _accounted(res)
    reasons = {r["id"]: (r["reason"], r["detail"]) for r in removed}
    assert reasons["null"] == ("null_text", "'text' is null") == reasons["pnull"]
    assert reasons["gone"][0] == "missing_text_field"


def test_one_survivor_names_a_report_that_exists(tmp_path, run_prepare) -> None:
    write_jsonl(tmp_path / "one.jsonl", [{"id": "only", "text": _doc(1)}])
    with pytest.raises(DataError, match="only one document survived") as err:
        run_prepare(f"input={tmp_path / 'one.jsonl'}", *MINIMAL, output="out1")
    report = str(err.value).rsplit("see ", 1)[1].rstrip(")")  # before: "see report.md", in a folder removed
    assert report == str(tmp_path / "out1" / "report.md") and (tmp_path / "out1" / "report.md").is_file()
    assert json.loads((tmp_path / "out1" / "report.json").read_text())["documents_out"] == 1
