"""Distributed strategies that need Python objects a YAML file cannot name directly."""

from __future__ import annotations

from lightning.pytorch.strategies import FSDPStrategy

from scratchllm.model.gpt import Block


def fsdp(sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False, **kwargs) -> FSDPStrategy:
    """FSDP with one transformer ``Block`` per unit: each block's parameters are gathered just before it runs and
    freed after, so peak memory holds one block's full weights plus a 1/N shard of the rest."""
    return FSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        **kwargs,
    )
