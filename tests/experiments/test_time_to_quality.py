"""The time-to-quality and parity scripts' own logic: when a target is first reached, and the configurations."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import time_to_quality  # noqa: E402
from bench import parity  # noqa: E402


def test_first_point_at_or_below_the_target():
    curve = [{"step": 100, "train_seconds": 10.0, "val_loss": 2.1}, {"step": 200, "train_seconds": 20.0,
             "val_loss": 1.88}, {"step": 300, "train_seconds": 30.0, "val_loss": 1.70}]
    assert time_to_quality.first_reaching(curve, 1.88)["step"] == 200
    assert time_to_quality.first_reaching(curve, 1.5) is None


def test_recipes_and_targets_are_the_issues():
    assert time_to_quality.TARGETS == {"tinyshakespeare_char_quick": (1.88, 45.0), "tinyshakespeare_char": (1.55, 900.0)}
    for recipe in time_to_quality.TARGETS:
        assert (REPO / "conf" / "experiment" / f"{recipe}.yaml").is_file()


def test_parity_compares_the_fast_path_with_eager_fp32():
    args = parity.parse_args([])
    assert args.configs[0] == parity.FIRST and "precision=32-true" in parity.CONFIGS[parity.FIRST]
    # the default comparison is the auto defaults (what a default run picks here), allowed to compile
    assert args.configs[-1] == parity.AUTO and args.tolerance == 0.02
    assert "precision=auto" in parity.CONFIGS[parity.AUTO] and "compile_min_steps=1" in parity.CONFIGS[parity.AUTO]
