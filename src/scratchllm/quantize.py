"""``python -m scratchllm.quantize ckpt_path=… method=int8|int4 [group_size=64 symmetric=false] [output=….safetensors]``:
write a packed weight-only quantized copy of a float checkpoint (scratchllm.quantization says how).

Examples::

    python -m scratchllm.quantize ckpt_path=last method=int8
    python -m scratchllm.quantize ckpt_path=run.ckpt method=int4 group_size=64 output=model.int4.safetensors
    python -m scratchllm.generate ckpt_path=model.int4.safetensors prompt="ROMEO:"
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="quantize")
def _main(cfg: DictConfig) -> None:
    from scratchllm.quantization import QuantConfig
    from scratchllm.quantization.io import quantize_checkpoint

    with report_user_errors():
        quant = QuantConfig(method=str(cfg.method), group_size=int(cfg.group_size), symmetric=bool(cfg.symmetric))
        quantize_checkpoint(cfg.ckpt_path, quant, cfg.output, log_dir=cfg.log_dir,
                            log=lambda line: print(line, file=sys.stderr, flush=True))


def main() -> None:
    precheck_overrides(str(config_dir()), "quantize", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
