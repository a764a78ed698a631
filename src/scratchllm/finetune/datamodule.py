"""``ChatDataModule``: conversations (built-in or JSONL files) → prompt-masked, padded, length-grouped batches.

The data path of one example: reader (``formats.py``) or built-in generator (``plays.py``) → chat template
(``chat.py``, markers added to the tokenizer) → shift, mask, truncate (``batches.py``) → batch dict
(``input_ids``, ``labels``, ``attention_mask``) → objective.

The tokenizer is the starting model's when the run has ``init_from`` (``use_tokenizer``, called by the run before
``setup``); otherwise it is built from ``tokenizer`` (a char vocabulary is fitted on the rendered training text).
Either way ``setup`` adds the chat markers to it, and the run grows the model's vocabulary to match.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Mapping, Sequence

import lightning as L
from torch.utils.data import DataLoader

from scratchllm.errors import ConfigError
from scratchllm.finetune.batches import EncodedSet, LengthGroupedBatches, collate, encode_examples
from scratchllm.finetune.chat import ChatTemplate, add_chat_tokens
from scratchllm.finetune.formats import read_conversations
from scratchllm.finetune.plays import builtin_splits
from scratchllm.finetune.preference import collate_pairs, encode_pairs, preference_pairs, read_pairs
from scratchllm.tokenizers import Tokenizer, build_tokenizer

log = logging.getLogger(__name__)


class ChatDataModule(L.LightningDataModule):
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
        super().__init__()
        if dataset is None and not train_paths:
            raise ConfigError("no fine-tuning data: set data.dataset=<built-in set> or data.train_paths=<JSONL files>")
        self.tokenizer_spec = tokenizer
        self.dataset, self.builtin = dataset, dict(builtin or {})
        self.train_paths, self.val_paths, self.val_fraction = train_paths, val_paths, float(val_fraction)
        self.format, self.system_prompt = format, system_prompt
        self.mask_prompt, self.truncation = bool(mask_prompt), truncation
        self.batch_size, self.context_length = int(batch_size), int(context_length)
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.max_val_windows = max_val_windows  # the shard data's name: here each example is one window
        self.preference = bool(preference)  # pairs (prompt, chosen, rejected) for objective=dpo: preference.py
        self._tokenizer: Tokenizer | None = None
        self.train_set: EncodedSet | None = None
        self.val_set: EncodedSet | None = None

    # --------------------------------------------------------------------------------------- tokenizer
    def use_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use the starting model's tokenizer (``init_from``) instead of building one from the config."""
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("call setup() first")
        return self._tokenizer

    # -------------------------------------------------------------------------------------------- data
    def _read(self, paths: Any, hint: str) -> list:
        if self.preference:
            return read_pairs(paths, system=self.system_prompt, hint=hint)
        return read_conversations(paths, fmt=self.format, system=self.system_prompt, hint=hint)

    def conversations(self) -> dict[str, list]:
        """The train and validation conversations (or preference pairs of them), before tokenization."""
        if self.dataset is not None:
            return (preference_pairs if self.preference else builtin_splits)(self.dataset, **self.builtin)
        train = self._read(self.train_paths, "data.train_paths")
        if self.val_paths:
            return {"train": train, "val": self._read(self.val_paths, "data.val_paths")}
        # A fixed tail of the file order (reproducible, and never shuffled into training).
        n_val = max(1, round(len(train) * self.val_fraction)) if len(train) > 1 else 0
        if n_val == 0:
            raise ConfigError("one training example leaves none for validation; add data.val_paths=<JSONL files>")
        return {"train": train[:-n_val], "val": train[-n_val:]}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.conversations()
        if self._tokenizer is None:
            convs = [c for pair in splits["train"] for c in pair] if self.preference else splits["train"]
            text = "\n".join(m["content"] for conv in convs for m in conv) + "\n"
            text += "".join(f"{r}\n" for r in ("system", "user", "assistant"))  # the headers' characters
            self._tokenizer = build_tokenizer(self.tokenizer_spec or "gpt2", train_text=text)
        add_chat_tokens(self._tokenizer)
        template = ChatTemplate(self._tokenizer)
        common = dict(context_length=self.context_length, mask_prompt=self.mask_prompt, truncation=self.truncation)
        encode = encode_pairs if self.preference else encode_examples
        self.train_set = encode(splits["train"], template, name="train", **common)
        self.val_set = encode(splits["val"], template, name="val", **common)
        if self.max_val_windows:  # the first ones of a fixed order: every validation sees the same examples
            self.val_set.examples = self.val_set.examples[: int(self.max_val_windows)]
        log.info("fine-tuning data: %d train / %d val %s (mask_prompt=%s)", len(self.train_set.examples),
                 len(self.val_set.examples), "preference pairs" if self.preference else "conversations",
                 self.mask_prompt)

    @property
    def pad_id(self) -> int:
        eot = self.tokenizer.eot_id
        return eot if eot is not None else 0  # any id: padded positions are never targets nor attended to

    def _loader(self, data: EncodedSet, shuffle: bool) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        rank, world = (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)
        sampler = LengthGroupedBatches(data.lengths(), self.batch_size, shuffle=shuffle, seed=self.seed,
                                       rank=rank, world=world)
        return DataLoader(data.examples, batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=functools.partial(collate_pairs if self.preference else collate,
                                                       pad_id=self.pad_id))

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return self._loader(self.val_set, shuffle=False)


class ClassifyDataModule(ChatDataModule):
    """Texts with labels (``classify_data.py``) for ``objective=classify``: the built-in genre set or files.

    Shares the chat module's tokenizer handling (``use_tokenizer``/``init_from``), validation split and
    length-grouped batches; ``labels`` (the label names, in class-id order) is what the run hands the objective."""

    def __init__(self, *args: Any, dataset: str | None = "genre_passages", labels: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, dataset=dataset, **kwargs)
        self.label_names = list(labels) if labels else None
        self.labels: list[str] = []

    def conversations(self) -> dict[str, list]:
        from scratchllm.finetune.classify_data import genre_passages, read_labelled

        if self.dataset is not None:
            if self.dataset != "genre_passages":
                raise ConfigError(f"data.dataset={self.dataset!r} is not a built-in classification set; use "
                                  "genre_passages, or data.dataset=null and data.train_paths=<JSONL/CSV files>")
            return genre_passages(**self.builtin)
        train = read_labelled(self.train_paths, "data.train_paths")
        if self.val_paths:
            return {"train": train, "val": read_labelled(self.val_paths, "data.val_paths")}
        n_val = max(1, round(len(train) * self.val_fraction))
        return {"train": train[:-n_val], "val": train[-n_val:]}

    def setup(self, stage: str | None = None) -> None:
        from scratchllm.finetune.classify_data import encode_labelled, label_ids

        if self.train_set is not None:
            return
        splits = self.conversations()
        if self._tokenizer is None:
            text = "\n".join(t for t, _, _ in splits["train"]) + "\n"
            self._tokenizer = build_tokenizer(self.tokenizer_spec or "gpt2", train_text=text)
        ids = label_ids(splits["train"], self.label_names)
        self.labels = list(ids)
        for name in ("train", "val"):
            encoded = EncodedSet(examples=encode_labelled(splits[name], self._tokenizer, ids,
                                                          context_length=self.context_length, name=name))
            setattr(self, f"{name}_set", encoded)
        if self.max_val_windows:
            self.val_set.examples = self.val_set.examples[: int(self.max_val_windows)]
        log.info("classification data: %d train / %d val texts, labels %s", len(self.train_set.examples),
                 len(self.val_set.examples), self.labels)

    def _loader(self, data: EncodedSet, shuffle: bool) -> DataLoader:
        from scratchllm.finetune.classify_data import collate_labelled

        trainer = getattr(self, "trainer", None)
        rank, world = (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)
        sampler = LengthGroupedBatches(data.lengths(), self.batch_size, shuffle=shuffle, seed=self.seed,
                                       rank=rank, world=world)
        return DataLoader(data.examples, batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=functools.partial(collate_labelled, pad_id=self.pad_id))
