"""``ShardFolder``: train on a folder of token shards that is already prepared (``data=shards data.path=…``).

A prepared folder is what ``prepare_corpus`` (and ``python -m scratchllm.prepare``) writes: ``manifest.json``,
``tokenizer.json`` and the ``train_*.bin`` / ``val_*.bin`` shards (see ``folders.py``). Nothing is tokenised
again; the folder's own tokenizer is the one the model is trained with, whatever ``tokenizer=`` says. Training
never rebuilds or deletes such a folder: it may be the only copy of the user's curated data.
"""

from __future__ import annotations

from pathlib import Path

from scratchllm.data.folders import MANIFEST, TOKENIZER_FILE, PreparedData, load_prepared, prepared_folder_hint
from scratchllm.errors import DataError


class ShardFolder:
    """A ready shard folder used in place of a corpus."""

    def __init__(self, path: str) -> None:
        self.path = Path(str(path)).expanduser()

    def check(self) -> Path:
        if not self.path.is_dir():
            raise DataError(f"shard folder {self.path} does not exist; set data.path to a folder of prepared shards")
        for name in (MANIFEST, TOKENIZER_FILE):
            if not (self.path / name).is_file():
                raise DataError(
                    f"{self.path} has no {name}: it is not a prepared shard folder "
                    "(prepare one with scratchllm.data.prepare_corpus or python -m scratchllm.prepare)"
                )
        return self.path

    def load(self) -> PreparedData:
        """The folder's shards and tokenizer; a damaged shard found later names ``prepared_folder_hint``."""
        folder = self.check()
        try:
            return load_prepared(folder, rebuild_hint=prepared_folder_hint(folder))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"shard folder {folder} is unreadable ({e}); prepare it again") from e

    def splits(self) -> dict[str, list[str]]:
        raise DataError("a ShardFolder holds tokens, not text; it is read by prepare_corpus directly")

    def fingerprint(self) -> str:
        return f"shards:{self.path.resolve()}"

    def __repr__(self) -> str:
        return f"ShardFolder({str(self.path)!r})"
