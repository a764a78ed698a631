"""How good is a model beyond its validation loss: bits per byte on any text, multiple-choice and generation tasks,
a centered-accuracy summary (CORE), and an lm-evaluation-harness adapter (``harness.py``).

Builds on ``generation/`` (loading, greedy decoding with stop strings), never on Lightning. ``scoring`` holds the
log-likelihood arithmetic, ``tasks`` / ``builtin`` the items, ``runner`` the metrics, ``report`` the outputs and
``session`` what the command does.
"""

from scratchllm.evaluation.scoring import TextScore, continuation_logprobs, encode_pair, score_text, token_nlls
from scratchllm.evaluation.tasks import ChoiceItem, GenerationItem, Task, load_jsonl_task

__all__ = [
    "ChoiceItem",
    "GenerationItem",
    "Task",
    "TextScore",
    "continuation_logprobs",
    "encode_pair",
    "load_jsonl_task",
    "score_text",
    "token_nlls",
]
