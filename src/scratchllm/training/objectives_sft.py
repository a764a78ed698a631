"""``objective=sft``: supervised fine-tuning, the next-token loss over the answer tokens only.

The chat data (``scratchllm.finetune``) sets every label outside an assistant reply to -100, so this is the
language-model loss of ``objectives.NextTokenLM`` averaged over exactly the assistant tokens (with
``data.mask_prompt=false``, over every token); its own name keeps checkpoints saying how they were trained.
"""

from __future__ import annotations

from scratchllm.training.objectives import NextTokenLM


class SupervisedFineTuning(NextTokenLM):
    name = "sft"
