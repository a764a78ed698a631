"""Fine-tuning data modules: ``ChatDataModule`` (conversations or preference pairs → prompt-masked batches) and
``ClassifyDataModule`` (texts with labels → batches of class ids), on one base, ``FineTuneDataModule``.

The data path of one chat example: reader (``formats.py``) or built-in generator (``plays.py``) → chat template
(``chat.py``, markers added to the tokenizer) → shift, mask, truncate (``batches.py``) → batch dict
(``input_ids``, ``labels``, ``attention_mask``) → objective.

What the base owns (the same for every kind of fine-tuning data):

- **Tokenizer**: the starting model's when the run has ``init_from`` (``use_tokenizer``, called by the run before
  ``setup``); otherwise built from ``tokenizer`` (a char vocabulary is fitted on the training text).
- **Splits**: a built-in set (``dataset``), or files (``train_paths``, and ``val_paths`` or else a fixed tail of
  ``val_fraction`` of the training examples, never shuffled into training).
- **Batches**: length-grouped, split by rank, served as a ``BatchStream`` (``batches.py``: why a stream).
- **Data position**: ``state_dict()`` is ``{"batches_served": n}``, the training batches consumed, counted in
  ``on_before_batch_transfer`` as the pretraining ``ShardDataModule`` does (its docstring: why that hook).
  Lightning saves it in every checkpoint and hands it back before the train loader is built, so a resumed run
  (``ckpt_path=last``) serves the same batches, in the same order, as an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping, Sequence

import lightning as L
from torch.utils.data import DataLoader

from scratchllm.data.position import DataPosition
from scratchllm.errors import ConfigError
from scratchllm.finetune.batches import BatchStream, EncodedSet, LengthGroupedBatches, collate, encode_examples
from scratchllm.finetune.chat import ChatTemplate, add_chat_tokens
from scratchllm.finetune.formats import read_conversations
from scratchllm.finetune.plays import builtin_splits
from scratchllm.finetune.preference import collate_pairs, encode_pairs, preference_pairs, read_pairs
from scratchllm.tokenizers import Tokenizer, build_tokenizer

log = logging.getLogger(__name__)


class FineTuneDataModule(DataPosition, L.LightningDataModule):
    """The shared part (module docstring); a subclass says how to read, encode and collate its examples."""

    kind = "examples"

    def __init__(
        self,
        tokenizer: Mapping[str, Any] | str | None = None,
        dataset: str | None = None,
        builtin: Mapping[str, Any] | None = None,
        train_paths: str | Sequence[str] | None = None,
        val_paths: str | Sequence[str] | None = None,
        val_fraction: float = 0.05,
        batch_size: int = 16,
        context_length: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        max_val_windows: int | None = None,
    ) -> None:
        super().__init__()
        if dataset is None and not train_paths:
            raise ConfigError("no fine-tuning data: set data.dataset=<built-in set> or data.train_paths=<files>")
        self.tokenizer_spec = tokenizer
        self.dataset, self.builtin = dataset, dict(builtin or {})
        self.train_paths, self.val_paths, self.val_fraction = train_paths, val_paths, float(val_fraction)
        self.batch_size, self.context_length = int(batch_size), int(context_length)
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.max_val_windows = max_val_windows  # the shard data's name: here each example is one window
        self._tokenizer: Tokenizer | None = None
        self.train_set: EncodedSet | None = None
        self.val_set: EncodedSet | None = None
        self.batches_served = 0
        self._train_stream: BatchStream | None = None

    # ------------------------------------------------------------------------ what a subclass says
    def builtin_splits(self) -> dict[str, list]:
        raise NotImplementedError

    def read(self, paths: Any, hint: str) -> list:
        raise NotImplementedError

    def tokenizer_text(self, train: list) -> str:
        """The text a char vocabulary is fitted on (no ``init_from``)."""
        raise NotImplementedError

    def encode(self, splits: dict[str, list]) -> tuple[EncodedSet, EncodedSet]:
        raise NotImplementedError

    def collate_fn(self) -> Callable[[list], dict]:
        raise NotImplementedError

    # --------------------------------------------------------------------------------- tokenizer
    def use_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use the starting model's tokenizer (``init_from``) instead of building one from the config."""
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("call setup() first")
        return self._tokenizer

    @property
    def pad_id(self) -> int:
        eot = self.tokenizer.eot_id
        return eot if eot is not None else 0  # any id: padded positions are never targets nor attended to

    # -------------------------------------------------------------------------------------- data
    def conversations(self) -> dict[str, list]:
        """The train and validation examples, before tokenization."""
        if self.dataset is not None:
            return self.builtin_splits()
        train = self.read(self.train_paths, "data.train_paths")
        if self.val_paths:
            return {"train": train, "val": self.read(self.val_paths, "data.val_paths")}
        # A fixed tail of the file order (reproducible, and never shuffled into training).
        n_val = max(1, round(len(train) * self.val_fraction)) if len(train) > 1 else 0
        if n_val == 0:
            raise ConfigError("one training example leaves none for validation; add data.val_paths=<files>")
        return {"train": train[:-n_val], "val": train[-n_val:]}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.conversations()
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.tokenizer_spec or "gpt2",
                                              train_text=self.tokenizer_text(splits["train"]))
        self.train_set, self.val_set = self.encode(splits)
        if self.max_val_windows:  # the first ones of a fixed order: every validation sees the same examples
            self.val_set.examples = self.val_set.examples[: int(self.max_val_windows)]
        log.info("fine-tuning data: %d train / %d val %s", len(self.train_set.examples),
                 len(self.val_set.examples), self.kind)

    def _stream(self, data: EncodedSet, shuffle: bool) -> BatchStream:
        trainer = getattr(self, "trainer", None)
        rank, world = (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)
        sampler = LengthGroupedBatches(data.lengths(), self.batch_size, shuffle=shuffle, seed=self.seed,
                                       rank=rank, world=world, start=self.batches_served if shuffle else 0)
        return BatchStream(data.examples, sampler, self.collate_fn(), resumable=shuffle)

    def _loader(self, stream: BatchStream) -> DataLoader:
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        self._train_stream = self._stream(self.train_set, shuffle=True)
        return self._loader(self._train_stream)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return self._loader(self._stream(self.val_set, shuffle=False))

    # ---------------------------------------------------------------------------- data position
    def _move_stream(self, batches_served: int) -> None:
        if self._train_stream is not None:  # workers' copies cannot move it: the consumed count does
            self._train_stream.sampler.start = batches_served


class ChatDataModule(FineTuneDataModule):
    """Conversations (built-in or chat/Alpaca JSONL files) for ``objective=sft``, or preference pairs of them
    (``preference=True``: ``preference.py``) for ``objective=dpo``; the prompt masked unless ``mask_prompt=False``."""

    def __init__(
        self,
        tokenizer: Mapping[str, Any] | str | None = None,
        dataset: str | None = "who_speaks_next",
        builtin: Mapping[str, Any] | None = None,
        train_paths: str | Sequence[str] | None = None,
        val_paths: str | Sequence[str] | None = None,
        val_fraction: float = 0.05,
        format: str = "auto",
        system_prompt: str | None = None,
        mask_prompt: bool = True,
        truncation: str = "right",
        batch_size: int = 16,
        context_length: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        max_val_windows: int | None = None,
        preference: bool = False,
    ) -> None:
        super().__init__(tokenizer=tokenizer, dataset=dataset, builtin=builtin, train_paths=train_paths,
                         val_paths=val_paths, val_fraction=val_fraction, batch_size=batch_size,
                         context_length=context_length, seed=seed, num_workers=num_workers,
                         max_val_windows=max_val_windows)
        self.format, self.system_prompt = format, system_prompt
        self.mask_prompt, self.truncation = bool(mask_prompt), truncation
        self.preference = bool(preference)
        self.kind = f"{'preference pairs' if self.preference else 'conversations'} (mask_prompt={self.mask_prompt})"

    def builtin_splits(self) -> dict[str, list]:
        return (preference_pairs if self.preference else builtin_splits)(self.dataset, **self.builtin)

    def read(self, paths: Any, hint: str) -> list:
        if self.preference:
            return read_pairs(paths, system=self.system_prompt, hint=hint)
        return read_conversations(paths, fmt=self.format, system=self.system_prompt, hint=hint)

    def tokenizer_text(self, train: list) -> str:
        convs = [c for pair in train for c in pair] if self.preference else train
        text = "\n".join(m["content"] for conv in convs for m in conv) + "\n"
        return text + "".join(f"{r}\n" for r in ("system", "user", "assistant"))  # the headers' characters

    def encode(self, splits: dict[str, list]) -> tuple[EncodedSet, EncodedSet]:
        add_chat_tokens(self.tokenizer)
        template = ChatTemplate(self.tokenizer)
        common = dict(context_length=self.context_length, mask_prompt=self.mask_prompt, truncation=self.truncation)
        encode = encode_pairs if self.preference else encode_examples
        return (encode(splits["train"], template, name="train", **common),
                encode(splits["val"], template, name="val", **common))

    def collate_fn(self) -> Callable[[list], dict]:
        return functools.partial(collate_pairs if self.preference else collate, pad_id=self.pad_id)


class ClassifyDataModule(FineTuneDataModule):
    """Texts with labels (``classify_data.py``) for ``objective=classify``: the built-in genre set or JSONL/CSV
    files; ``labels`` (the label names, in class-id order) is what the run hands the objective."""

    kind = "labelled texts"

    def __init__(self, *args: Any, dataset: str | None = "genre_passages", labels: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, dataset=dataset, **kwargs)
        self.label_names = list(labels) if labels else None
        self.labels: list[str] = []

    def builtin_splits(self) -> dict[str, list]:
        from scratchllm.finetune.classify_data import genre_passages

        if self.dataset != "genre_passages":
            raise ConfigError(f"data.dataset={self.dataset!r} is not a built-in classification set; use "
                              "genre_passages, or data.dataset=null and data.train_paths=<JSONL/CSV files>")
        return genre_passages(**self.builtin)

    def read(self, paths: Any, hint: str) -> list:
        from scratchllm.finetune.classify_data import read_labelled

        return read_labelled(paths, hint)

    def tokenizer_text(self, train: list) -> str:
        return "\n".join(t for t, _, _ in train) + "\n"

    def encode(self, splits: dict[str, list]) -> tuple[EncodedSet, EncodedSet]:
        from scratchllm.finetune.classify_data import encode_labelled, label_ids

        ids = label_ids(splits["train"], self.label_names)
        self.labels = list(ids)
        log.info("classification labels: %s", self.labels)
        return tuple(EncodedSet(examples=encode_labelled(splits[name], self.tokenizer, ids,  # type: ignore
                                                         context_length=self.context_length, name=name))
                     for name in ("train", "val"))

    def collate_fn(self) -> Callable[[list], dict]:
        from scratchllm.finetune.classify_data import collate_labelled

        return functools.partial(collate_labelled, pad_id=self.pad_id)
