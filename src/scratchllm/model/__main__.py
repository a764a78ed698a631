"""``python -m scratchllm.model [preset ...]``: the parameter table of every preset (or the named ones).

Each preset is also built on the meta device (shapes only, no memory) to check that the real module has
exactly the parameters the table claims.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from scratchllm.errors import ScratchLLMError
from scratchllm.model.config import ModelConfig
from scratchllm.model.gpt import GPT
from scratchllm.model.presets import load_preset, preset_names
from scratchllm.model.report import param_report, report_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchllm.model", description=__doc__)
    parser.add_argument("presets", nargs="*", help="preset names (default: all of conf/model/)")
    args = parser.parse_args(argv)
    try:
        names = args.presets or preset_names()
        configs = {name: load_preset(name) for name in names}
    except ScratchLLMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report_table(configs))
    print()
    with torch.device("meta"):  # the first meta build pays one-off set-up costs: keep them out of the timings
        GPT(ModelConfig(vocab_size=8, context_length=8, n_layer=1, n_head=1, n_embd=8))
    for name, cfg in configs.items():
        start = time.perf_counter()
        with torch.device("meta"):
            model = GPT(cfg)
        built = sum(p.numel() for p in model.parameters())
        expected = param_report(cfg).allocated
        status = "ok" if built == expected else f"MISMATCH (table says {expected:,})"
        print(f"{name}: built on meta in {time.perf_counter() - start:.2f}s, {built:,} allocated parameters "
              f"(incl. {param_report(cfg).padding:,} vocab padding) {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
