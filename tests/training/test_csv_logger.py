"""``logger=csv`` under ``trainer=ddp_sim`` (ddp_spawn): the validation after ``fit`` runs in a new child process
whose CSV writer has not seen the fit's columns; Lightning's writer then rewrote metrics.csv under the validation's
columns only and failed ("dict contains fields not in fieldnames"). Ours keeps the file's columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from scratchllm.training.callbacks import CSVLogger, _HeaderMergingWriter
from tests.training.conftest import FAST, run_cli


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _fit_then_fresh_writer(writer_type: type, log_dir: Path) -> None:
    """The ddp_spawn sequence: one writer writes the fit's rows, a fresh one (the next child) adds another key."""
    fit = writer_type(log_dir=str(log_dir))
    fit.log_metrics({"train/loss": 4.0}, step=0)
    fit.save()
    fit.log_metrics({"train/loss": 3.5, "val/loss": 3.9}, step=1)  # a new key mid-fit: the header grows
    fit.save()
    validate = writer_type(log_dir=str(log_dir))  # _check_log_dir_exists would delete the file: the parent's
    validate.metrics_keys = []                    # writer was made before the fit, so skip it as ddp_spawn does
    validate.log_metrics({"val/loss": 3.8, "val/ppl": 44.7}, step=2)
    validate.save()


def test_lightning_writer_fails_the_way_we_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExperimentWriter, "_check_log_dir_exists", lambda self: None)
    with pytest.raises(ValueError, match="dict contains fields not in fieldnames"):
        _fit_then_fresh_writer(ExperimentWriter, tmp_path)


def test_merging_writer_keeps_every_column_and_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExperimentWriter, "_check_log_dir_exists", lambda self: None)
    _fit_then_fresh_writer(_HeaderMergingWriter, tmp_path)
    header, rows = _rows(tmp_path / "metrics.csv")
    assert header == ["step", "train/loss", "val/loss", "val/ppl"]
    assert rows == [
        {"step": "0", "train/loss": "4.0", "val/loss": "", "val/ppl": ""},
        {"step": "1", "train/loss": "3.5", "val/loss": "3.9", "val/ppl": ""},
        {"step": "2", "train/loss": "", "val/loss": "3.8", "val/ppl": "44.7"},
    ]


def test_config_uses_our_logger(make_cfg) -> None:
    from hydra.utils import instantiate

    logger = instantiate(make_cfg("logger=csv").logger.csv)
    assert isinstance(logger, CSVLogger) and isinstance(logger.experiment, _HeaderMergingWriter)


@pytest.mark.slow
def test_csv_logger_under_ddp_sim_logs_every_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = run_cli("-m", "scratchllm.train", *FAST, "logger=csv", "trainer=ddp_sim", "trainer.log_every_n_steps=1",
                  "trainer.max_steps=3", "trainer.val_check_interval=3", "sample.max_new_tokens=0", "threads=1",
                  f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                  env_extra={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    header, rows = _rows(run_dir / "csv" / "metrics.csv")
    assert {"train/loss", "val/loss", "step"} <= set(header)
    # every training step (log_every_n_steps=1), then the fit's validation (after the 3rd step: Lightning's
    # step column counts from 0) and the final one, of the same weights, so with the same loss
    assert [r["step"] for r in rows if r["train/loss"]] == ["0", "1", "2"]
    validations = [r for r in rows if r["val/loss"]]
    # the final validation is logged at the fit's last step, as in one process (the parent's loop never stepped: it
    # was logged at step 0)
    assert len(validations) == 2 and validations[0]["step"] == "2" and validations[1]["step"] == "3"
    assert validations[0]["val/loss"] == validations[1]["val/loss"]
