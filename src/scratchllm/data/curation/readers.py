"""Stage 1, read: files, folders, globs and Hugging Face datasets -> a stream of ``Document`` (or ``Removal``).

What a record is, by file suffix (a trailing ``.gz`` is decompressed on the fly):

- ``.jsonl`` / ``.ndjson``: one JSON object per line; the text is ``read.text_field``, the id ``read.id_field``
  or ``path:line`` (1-based). Blank lines are not records.
- ``.json``: a list of such objects (id default ``path:index``, 0-based) or a single object.
- ``.parquet``: one record per row (``pyarrow``; id default ``path:row``), read in batches of rows.
- anything else: one document per file, the file's text (id: the path).
- ``hf:<name>``: a Hugging Face dataset, streamed (needs ``datasets`` and the network).

A folder contributes every file below it whose suffix is in ``read.extensions``. Everything streams (one line,
one row batch or one file at a time) except a ``.json`` file, which JSON forces us to parse whole.

Bad input never stops the run when the rest can go on: a line that is not JSON, a record without the text
field (or with ``null`` there), a Parquet file without the text column, a binary file, a JSONL line longer than
``read.max_record_mb`` (skipped without holding it in memory): each becomes a ``Removal`` at stage ``read`` (so
it is counted in the report and listed in ``removed.jsonl``) and a warning. A compressed file whose stream
breaks off (truncated, or a corrupt deflate block) keeps what was read before the break; the rest is one
``unreadable_rest`` removal. Undecodable bytes are replaced by U+FFFD and counted on the document, and so are
lone surrogates (a JSON ``"\ud800"`` escape decodes to one; no UTF-8 file can hold it, so it would fail every
later write). Only input that matches nothing, or a missing library, is an error. What is binary is decided by
``scratchllm.textio.binary_reason``, the rule training and the tokenizer trainer use.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator

from scratchllm.data.curation.config import ReadConfig
from scratchllm.data.curation.documents import Document, Removal
from scratchllm.errors import ConfigError, DataError
from scratchllm.textio import SNIFF_BYTES, binary_reason, decode_counting, expand_paths, read_head, skip_binary

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
PARQUET_BATCH_ROWS = 1024
_JSONL = (".jsonl", ".ndjson")
# bytes read at a time where a whole line or file is not needed at once: a stream that breaks off loses only the
# piece it broke in (zlib returns nothing of the call that fails)
READ_PIECE = 1 << 16
# what a broken compressed stream raises: BadGzipFile (an OSError), EOFError when it is cut short, zlib.error for
# a corrupt deflate block
STREAM_ERRORS = (OSError, EOFError, zlib.error)
_SURROGATE = re.compile("[\ud800-\udfff]")
Record = Document | Removal
ByteCounter = Callable[[int], None]


def no_surrogates(text: str) -> tuple[str, int]:
    """``text`` with lone surrogates replaced by U+FFFD, and how many there were."""
    if text.isascii() or not _SURROGATE.search(text):  # the common case, at C speed
        return text, 0
    return _SURROGATE.subn("\ufffd", text)


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(_JSONL):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _suffix_ok(path: Path, extensions: list[str]) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return any(name.endswith(ext.lower()) for ext in extensions)


def resolve_inputs(patterns: list[str], cfg: ReadConfig) -> list[Path | str]:
    """Files named by ``patterns`` (file, folder, glob) and ``hf:`` names, in order and without repeats."""
    if not patterns:
        raise DataError("no input given; pass input=<file, folder, glob or hf:name>")
    found: list[Path | str] = []
    seen: set[Path | str] = set()
    for pattern in patterns:
        if pattern.startswith(HF_PREFIX):
            if not pattern[len(HF_PREFIX):]:
                raise ConfigError("input=hf: needs a dataset name, e.g. input=hf:roneneldan/TinyStories")
            items: list[tuple[Path | str, Path | str]] = [(pattern, pattern)]
        else:
            paths = expand_paths(
                pattern,
                accept=lambda q: _suffix_ok(q, cfg.extensions),
                kinds="/".join(cfg.extensions),
                hint="input=<file, folder or glob> (and read.extensions)",
            )
            items = [(p, p.resolve()) for p in paths]
        for item, key in items:
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found


def total_bytes(inputs: list[Path | str]) -> int | None:
    """Bytes of all input files (for a progress bar); None when a streamed dataset makes it unknowable."""
    if any(isinstance(i, str) or i.name.lower().endswith(".gz") for i in inputs):  # streamed, or counted unpacked
        return None
    return sum(p.stat().st_size for p in inputs if isinstance(p, Path))


def decode(raw: bytes, encoding: str) -> tuple[str, int]:
    """Text of ``raw`` and the number of undecodable byte sequences that became U+FFFD."""
    return decode_counting(raw, encoding, hint="read.encoding")


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _binary(path: Path, head: bytes, size: int, cfg: ReadConfig) -> Removal | None:
    """The read-stage ``Removal`` of a binary file (and its warning), or None for text."""
    reason = binary_reason(head, cfg.encoding, hint="read.encoding")
    if reason is None:
        return None
    skip_binary(path, reason, "pass text files, or set read.encoding=<encoding> if it is text in another encoding")
    return Removal(str(path), "read", "binary_file", reason, nbytes=size)


def iter_records(inputs: list[Path | str], cfg: ReadConfig, on_bytes: ByteCounter | None = None) -> Iterator[Record]:
    """Every input record, in input order, as a ``Document`` or a read-stage ``Removal``."""
    count = on_bytes or (lambda n: None)
    produced = 0
    for item in inputs:
        if isinstance(item, str):
            records: Iterator[Record] = _iter_hf(item[len(HF_PREFIX):], cfg)
        else:
            kind = _kind(item)
            reader = {"jsonl": _iter_jsonl, "json": _iter_json, "parquet": _iter_parquet, "text": _iter_text}[kind]
            records = reader(item, cfg, count)
        for record in records:
            yield record
            produced += 1
            if cfg.max_documents is not None and produced >= cfg.max_documents:
                return


def _read_all(path: Path) -> tuple[bytes, BaseException | None]:
    """A file's bytes (decompressed), and the error that stopped the reading early, if one did."""
    chunks: list[bytes] = []
    try:
        with _open(path) as f:
            while chunk := f.read1(READ_PIECE):
                chunks.append(chunk)
    except STREAM_ERRORS as e:
        return b"".join(chunks), e
    return b"".join(chunks), None


def _why(e: BaseException) -> str:
    return f"{'zlib.error' if isinstance(e, zlib.error) else type(e).__name__}: {e}"[:200]


def _rest_unreadable(path: Path, where: str, what_was_read: str, e: BaseException) -> Removal:
    """The read-stage ``Removal`` for the part of a file after its (compressed) stream broke off."""
    log.warning("%s breaks off (%s): kept what came before it (%s), recorded the rest in removed.jsonl", path, e,
                what_was_read)
    return Removal(f"{path}:{where}", "read", "unreadable_rest",
                   f"{_why(e)}; kept what came before it ({what_was_read})")


def _read_whole(path: Path, cfg: ReadConfig, count: ByteCounter
                ) -> Removal | tuple[bytes, str, int, BaseException | None]:
    """A whole file's bytes, text, undecodable-sequence count and the error that cut the reading short (if
    any), or the read-stage ``Removal`` saying why nothing could be read (unreadable, or binary)."""
    raw, error = _read_all(path)
    if error is not None and not raw:
        return Removal(str(path), "read", "unreadable_file", _why(error))
    count(path.stat().st_size)
    binary = _binary(path, raw[:SNIFF_BYTES], len(raw), cfg)
    if binary is not None:
        return binary
    text, bad = decode(raw, cfg.encoding)
    return raw, text, bad, error


def _iter_text(path: Path, cfg: ReadConfig, count: ByteCounter) -> Iterator[Record]:
    got = _read_whole(path, cfg, count)
    if isinstance(got, Removal):
        yield got
        return
    raw, text, bad, error = got
    yield Document(str(path), text, bad)
    if error is not None:
        yield _rest_unreadable(path, "rest", f"the first {len(raw):,} bytes", error)


def _from_object(obj: object, default_id: str, cfg: ReadConfig, nbytes: int, raw_text: str) -> Record:
    """A parsed JSON record -> Document, or Removal naming what is wrong with it."""
    if not isinstance(obj, dict):
        return Removal(default_id, "read", "not_an_object", f"a JSON {type(obj).__name__}, not an object",
                       nbytes=nbytes, text=raw_text)
    rid = obj.get(cfg.id_field)
    doc_id = no_surrogates(str(rid))[0] if rid is not None and rid != "" else default_id
    if cfg.text_field not in obj:
        keys = no_surrogates(", ".join(list(map(str, obj))[:8]))[0]
        return Removal(doc_id, "read", "missing_text_field",
                       f"no '{cfg.text_field}' field (fields: {keys}); set read.text_field", nbytes=nbytes,
                       text=raw_text)
    text = obj[cfg.text_field]
    if text is None:
        return Removal(doc_id, "read", "null_text", f"'{cfg.text_field}' is null", nbytes=nbytes, text=raw_text)
    if not isinstance(text, str):
        return Removal(doc_id, "read", "text_not_a_string", f"'{cfg.text_field}' is a {type(text).__name__}",
                       nbytes=nbytes, text=raw_text)
    text, lone = no_surrogates(text)
    return Document(doc_id, text, bad_bytes=lone)


def _lines(f: IO[bytes], limit: int) -> Iterator[bytes | int]:
    """Each line of ``f`` (bytes), or, for a line longer than ``limit`` bytes, its length: such a line is read
    through in ``READ_PIECE`` pieces and never held whole."""
    while raw := f.readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        del raw
        while piece := f.readline(READ_PIECE):
            size += len(piece)
            if piece.endswith(b"\n"):
                break
        yield size


def _iter_jsonl(path: Path, cfg: ReadConfig, count: ByteCounter) -> Iterator[Record]:
    problems = 0
    lineno = 0
    limit = int(cfg.max_record_mb * 1e6)
    try:
        with _open(path) as f:
            binary = _binary(path, read_head(f), path.stat().st_size, cfg)
            if binary is not None:
                yield binary
                return
            for raw in _lines(f, limit):
                lineno += 1
                default_id = f"{path}:{lineno}"
                if isinstance(raw, int):
                    count(raw)
                    problems += 1
                    log.warning("%s line %d is %s bytes long, over read.max_record_mb=%s: recorded in removed.jsonl",
                                path, lineno, f"{raw:,}", cfg.max_record_mb)
                    yield Removal(default_id, "read", "record_too_long",
                                  f"{raw:,} bytes on one line; raise read.max_record_mb to read it", nbytes=raw)
                    continue
                count(len(raw))
                if not raw.strip():
                    continue
                line, bad = decode(raw, cfg.encoding)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    problems += 1
                    if problems <= 3:
                        log.warning("%s line %d is not JSON (%s): recorded in removed.jsonl", path, lineno, e.msg)
                    yield Removal(default_id, "read", "invalid_json", f"{e.msg} at column {e.colno}",
                                  nbytes=len(raw), text=line)
                    continue
                record = _from_object(obj, default_id, cfg, len(raw), line)
                if isinstance(record, Document):
                    record.bad_bytes += bad
                else:
                    problems += 1
                    if problems <= 3:
                        log.warning("%s line %d: %s (%s)", path, lineno, record.reason, record.detail)
                yield record
    except STREAM_ERRORS as e:  # a truncated or corrupt .gz, a vanished file
        if lineno == 0:
            yield Removal(str(path), "read", "unreadable_file", _why(e))
        else:
            yield _rest_unreadable(path, str(lineno + 1), f"lines 1-{lineno}", e)
    if problems > 3:
        log.warning("%s: %d bad records in all (see removed.jsonl, stage 'read')", path, problems)


def _iter_json(path: Path, cfg: ReadConfig, count: ByteCounter) -> Iterator[Record]:
    got = _read_whole(path, cfg, count)
    if isinstance(got, Removal):
        yield got
        return
    raw, text, bad, error = got
    if error is not None:  # a JSON document cut short cannot be parsed: nothing of it is kept
        yield Removal(str(path), "read", "unreadable_file", _why(error),
                      nbytes=len(raw))
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        log.warning("%s is not valid JSON (%s at line %d): skipped", path, e.msg, e.lineno)
        yield Removal(str(path), "read", "invalid_json", f"{e.msg} at line {e.lineno}", nbytes=len(raw), text=text)
        return
    items = data if isinstance(data, list) else [data]
    single = not isinstance(data, list)
    for i, obj in enumerate(items):
        piece = no_surrogates(json.dumps(obj, ensure_ascii=False)[:1000])[0] if not isinstance(obj, dict) else ""
        record = _from_object(obj, str(path) if single else f"{path}:{i}", cfg, len(piece), piece)
        if isinstance(record, Document) and single:
            record.bad_bytes += bad
        yield record


def _iter_parquet(path: Path, cfg: ReadConfig, count: ByteCounter) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as e:
        raise DataError(f"reading {path} needs pyarrow; pip install pyarrow") from e
    size = path.stat().st_size
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        log.warning("%s is not a readable Parquet file (%s): skipped", path, e)
        yield Removal(str(path), "read", "unreadable_parquet", str(e)[:200], nbytes=size)
        return
    names = list(pf.schema_arrow.names)
    if cfg.text_field not in names:
        log.warning("%s has no '%s' column (columns: %s): skipped; set read.text_field", path, cfg.text_field,
                    ", ".join(names))
        yield Removal(str(path), "read", "missing_text_field",
                      f"no '{cfg.text_field}' column (columns: {', '.join(names[:12])}; "
                      f"{pf.metadata.num_rows} rows); set read.text_field", nbytes=size)
        return
    columns = [cfg.text_field] + ([cfg.id_field] if cfg.id_field in names and cfg.id_field != cfg.text_field else [])
    rows = max(1, pf.metadata.num_rows)
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        texts = batch.column(0).to_pylist()
        ids = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
        for text, rid in zip(texts, ids):
            doc_id = str(rid) if rid is not None and rid != "" else f"{path}:{row}"
            row += 1
            if isinstance(text, str):
                yield Document(doc_id, text)
            elif text is None:
                yield Removal(doc_id, "read", "null_text", f"'{cfg.text_field}' is null")
            else:
                yield Removal(doc_id, "read", "text_not_a_string", f"'{cfg.text_field}' is a {type(text).__name__}")
        count(size * len(texts) // rows)


def _iter_hf(name: str, cfg: ReadConfig) -> Iterator[Record]:
    """A Hugging Face dataset, streamed record by record. (Needs the network; not exercised by the tests.)"""
    try:
        import datasets
    except ModuleNotFoundError as e:
        raise DataError(f"input=hf:{name} needs the 'datasets' package; pip install datasets (and network access)") from e
    try:
        stream = datasets.load_dataset(name, cfg.hf_config, split=cfg.hf_split, streaming=True)
        for i, obj in enumerate(stream):
            yield _from_object(obj, f"hf:{name}:{i}", cfg, 0, "")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - network, auth, unknown dataset: all the user's to fix
        raise DataError(f"cannot stream hf:{name} (split {cfg.hf_split!r}): {type(e).__name__}: {e}".splitlines()[0]
                        ) from e
