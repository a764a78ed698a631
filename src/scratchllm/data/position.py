"""The data position every training data module keeps: how many training batches it has served.

Lightning stores a data module's ``state_dict()`` in every checkpoint, so a resumed run knows where its data
stream stood and continues there (exact resume: the same batches as an uninterrupted run). The count is taken
where batches pass through the module (``on_before_batch_transfer``) — in the main process, whatever the loader's
workers hold — and each module says how its live stream is moved to a position (``_move_stream``).
"""

from __future__ import annotations

from typing import Any


class DataPosition:
    """Mixin for a ``LightningDataModule`` (list it first, so these hooks win over Lightning's defaults)."""

    batches_served: int = 0

    def _move_stream(self, batches_served: int) -> None:
        """Make the live training stream (if any) continue after ``batches_served`` batches."""
        raise NotImplementedError

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            self.batches_served += 1
            # keeps a re-iterated stream in step; except under `overfit_batches` (debug=overfit), whose every
            # epoch must start at the same position to serve the same batches again
            if not trainer.overfit_batches:
                self._move_stream(self.batches_served)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_served": int(self.batches_served)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_served = int(state_dict.get("batches_served", 0))
        self._move_stream(self.batches_served)
