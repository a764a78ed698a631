"""Fine-tuning what you trained: a chat template with prompt masking, instruction/chat/preference/classification
data (files or built-in from the plays), LoRA, and ``init_from`` to start from a checkpoint of ours or a Hugging
Face folder. The objectives are ``training/objectives_{sft,dpo,classify}.py``.

    python -m scratchllm.train experiment=sft_plays init_from=<pretrained .ckpt>
    python -m scratchllm.generate ckpt_path=last chat=true interactive=true

``chat.py`` (template) → ``formats.py`` / ``plays.py`` (data) → ``batches.py`` (masking, padding, grouping) →
``datamodule.py``; ``start.py`` loads the starting model; ``answers.py`` scores held-out answers; ``lora.py``
and ``peft_export.py`` are the adapters; ``preference.py`` and ``classify_data.py`` feed DPO and classification.
"""

from typing import Any

from scratchllm.finetune.chat import (CHAT_TOKENS, IM_END, IM_START, ChatTemplate, add_chat_tokens,
                                     has_chat_tokens)

__all__ = ["CHAT_TOKENS", "IM_END", "IM_START", "ChatTemplate", "ChatDataModule", "ClassifyDataModule",
           "add_chat_tokens", "has_chat_tokens"]


def __getattr__(name: str) -> Any:
    # The data modules import Lightning (seconds); the chat template, which serving, evaluation and generation
    # use, must not pay for that.
    if name in ("ChatDataModule", "ClassifyDataModule"):
        from scratchllm.finetune import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'scratchllm.finetune' has no attribute {name!r}")
