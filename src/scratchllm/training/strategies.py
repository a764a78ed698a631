"""Distributed strategies that need Python objects a YAML file cannot name directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from scratchllm.model.gpt import Block
from scratchllm.training import sharded


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

    Sharded checkpoints (``state_dict_type="sharded"``, a folder: ``training/sharded.py``) go through
    torch.distributed.checkpoint's ``get_state_dict``/``set_state_dict`` instead of Lightning's own code, whose
    metadata file bypasses ``scratchllm.checkpoint`` (no atomic save, no digest) and whose loader unpickles without
    ``weights_only``; its removal of an old checkpoint also cannot delete a folder through our CheckpointIO.
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

    def _dcp_options(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(cpu_offload=self.root_device.type != "cpu")

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._state_dict_type == "sharded":
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            return get_model_state_dict(self.model, options=self._dcp_options())
        with self._full_state():
            return self.model.state_dict()

    def optimizer_state(self, optimizer) -> dict[str, Any]:
        from lightning.pytorch.core.optimizer import LightningOptimizer
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        if self._state_dict_type == "sharded":
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            return get_optimizer_state_dict(self.model, optimizer, options=self._dcp_options())
        with self._full_state():
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # keyed by parameter id, as a single-process optimizer's state is
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any = None) -> None:
        if self._state_dict_type != "sharded":
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        sharded.save(checkpoint, Path(self.broadcast(str(filepath))), rank=self.global_rank,
                     broadcast=self.broadcast, barrier=self.barrier)

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(self.broadcast(str(checkpoint_path)))
        if not sharded.is_sharded(path):
            return super().load_checkpoint(path, weights_only)
        from lightning.pytorch.trainer.states import TrainerFn
        from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                             set_model_state_dict, set_optimizer_state_dict)

        options = self._dcp_options()
        # templates with this rank's shards (an optimizer without state gets it from a zero-lr step first)
        state = {"model": get_model_state_dict(self.model, options=options)}
        fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING
        optimizers = self.optimizers if fitting else []
        for i, optimizer in enumerate(optimizers):
            state[f"optimizer_{i}"] = get_optimizer_state_dict(self.model, optimizer, options=options)
        sharded.dcp_load(state, path)
        set_model_state_dict(self.model, state["model"], options=options)
        for i, optimizer in enumerate(optimizers):
            set_optimizer_state_dict(self.model, optimizer, state[f"optimizer_{i}"], options=options)
        return sharded.load_meta(path)  # loops, schedulers, callbacks: Lightning restores them from here

    def remove_checkpoint(self, filepath) -> None:
        if self.is_global_zero:
            sharded.remove(filepath)


def sampling_model(trainer: Any, module: Any) -> nn.Module | None:
    """The model to sample from after a run: the module's own, or under FSDP a plain copy of it with the full
    weights on rank 0 (the gather is collective: every rank calls this; the others get None). FSDP's
    ``summon_full_params`` cannot serve here: its wrapped blocks refuse to run a forward inside it."""
    strategy = trainer.strategy
    if not isinstance(strategy, BlockFSDPStrategy) or strategy._root is None:
        return module.model
    from scratchllm import checkpoint
    from scratchllm.model import GPT

    with strategy._full_state():
        state = strategy.model.state_dict()
    if not strategy.is_global_zero:
        return None
    plain = GPT(module.model.config)
    plain.load_state_dict(checkpoint.model_state({"state_dict": state}))
    return plain.to(strategy.root_device)


def close_process_group() -> None:
    """End a distributed run's process group: a barrier (no rank leaves while another still talks to it), then
    ``destroy_process_group``. Lightning leaves a gloo group to the interpreter's exit, where the teardown of its
    threads can race between ranks (seen: a rank that had finished died with "terminate called without an active
    exception", failing the launch). Nothing to do without a group (one device, or ``ddp_spawn``'s parent)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def fsdp(sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False, cpu: bool = False,
         state_dict_type: str = "sharded", **kwargs) -> FSDPStrategy:
    """FSDP with one transformer ``Block`` per unit: each block's parameters are gathered just before it runs and
    freed after, so peak memory holds one block's full weights plus a 1/N shard of the rest.

    ``activation_checkpointing`` wraps each block with FSDP's checkpoint wrapper; ``model.checkpointing=full`` does
    the same inside the model (and also works under DDP): use one of the two. ``cpu``: processes talk over gloo.
    ``state_dict_type``: ``sharded`` (a folder, each rank writes its shard; ``export format=ckpt`` makes one file of
    it) or ``full`` (one file, gathered onto rank 0: simple, but the whole model must fit in rank 0's memory)."""
    if cpu:
        kwargs.setdefault("process_group_backend", "gloo")
    return BlockFSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        **kwargs,
    )
