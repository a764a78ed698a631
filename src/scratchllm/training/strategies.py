"""Distributed strategies that need Python objects a YAML file cannot name directly."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from scratchllm.model.gpt import Block


class BlockFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP with three changes, so that it also runs on CPU processes over gloo (``trainer=fsdp_sim``)
    and a validation after ``fit`` works:

    - Lightning refuses ``FSDPStrategy`` with ``accelerator=cpu`` ("requires a GPU accelerator"), comparing the
      exact type: a subclass passes. On CPU it hands torch's FSDP the device index, None, for which FSDP says
      "needs a non-CPU accelerator device": here the CPU device is named instead.
    - ``trainer.validate`` after ``fit`` sets the same model up again; Lightning would then skip wrapping the root
      (its blocks are wrapped already) and run on sharded flat weights ("'weight' must be 2-D"): here the root
      wrapper of the fit is reused.
    - one-file checkpoints gather the state with ``offload_to_cpu=True``, which on CPU tensors hands back freed
      memory (a segfault in ``clone``): on CPU they are gathered to rank 0 without it.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._root: nn.Module | None = None

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from lightning.fabric.strategies.fsdp import _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        if self._root is not None and self._root.module is model:
            return self._root
        device = self.root_device
        self._root = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=device if device.type == "cpu" else device.index,
            **self.kwargs,
        )
        _setup_activation_checkpointing(self._root, self._activation_checkpointing_kwargs)
        return self._root

    def _full_state(self):
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        offload = self.root_device.type != "cpu"
        return FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=offload, rank0_only=True),
                                    FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=True))

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._state_dict_type != "full":
            return super().lightning_module_state_dict()
        with self._full_state():
            return self.model.state_dict()

    def optimizer_state(self, optimizer) -> dict[str, Any]:
        from lightning.pytorch.core.optimizer import LightningOptimizer
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        if self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        with self._full_state():
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # keyed by parameter id, as a single-process optimizer's state is
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state


def fsdp(sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False, cpu: bool = False,
         **kwargs) -> FSDPStrategy:
    """FSDP with one transformer ``Block`` per unit: each block's parameters are gathered just before it runs and
    freed after, so peak memory holds one block's full weights plus a 1/N shard of the rest.

    ``activation_checkpointing`` wraps each block with FSDP's checkpoint wrapper; ``model.checkpointing=full`` does
    the same inside the model (and also works under DDP): use one of the two. ``cpu``: processes talk over gloo."""
    if cpu:
        kwargs.setdefault("process_group_backend", "gloo")
    return BlockFSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        **kwargs,
    )
