"""``python -m scratchllm.export format=gguf ckpt_path=… output=model.gguf [dtype=f16]``: a checkpoint as a file
another runtime loads (scratchllm.interop.gguf says what GGUF holds and how our tensors map to llama.cpp's).

Examples::

    python -m scratchllm.export format=gguf ckpt_path=last output=model.gguf
    python -m scratchllm.export format=gguf ckpt_path=run.ckpt output=model-q8.gguf dtype=q8_0
    python -m scratchllm.export format=ckpt ckpt_path=<run folder or sharded last.ckpt/> output=model.ckpt
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir

FORMATS = ("gguf", "ckpt")  # ckpt: a sharded (FSDP) checkpoint folder as one file


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
def _main(cfg: DictConfig) -> None:
    with report_user_errors():
        from scratchllm.errors import ConfigError
        from scratchllm.generation.loading import load_for_generation
        from scratchllm.interop.gguf import DTYPES, export_gguf

        if cfg.format not in FORMATS:
            raise ConfigError(f"format={cfg.format} is not known; choose one of: {', '.join(FORMATS)} (Hugging Face "
                              f"folders: scratchllm.interop.hf.save_hf)")
        if cfg.format == "ckpt":  # an FSDP run's sharded checkpoint folder → one regular checkpoint file
            from scratchllm.checkpoint import resolve
            from scratchllm.training.sharded import convert

            if not cfg.output:
                raise ConfigError("no output file given; pass output=<name>.ckpt")
            path = convert(resolve(cfg.ckpt_path, cfg.log_dir), cfg.output)
            print(f"wrote {path} ({path.stat().st_size / 2**20:,.1f} MB)", file=sys.stderr, flush=True)
            return
        if cfg.dtype not in DTYPES:  # before the weights are read
            raise ConfigError(f"dtype={cfg.dtype} is not a GGUF export type; choose one of: {', '.join(DTYPES)}")
        if not cfg.output:
            raise ConfigError("no output file given; pass output=<name>.gguf")
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        log(f"loading {cfg.ckpt_path}")
        model, tokenizer = load_for_generation(cfg.ckpt_path, device="cpu", dtype="float32", log_dir=cfg.log_dir)
        path = export_gguf(model, tokenizer, cfg.output, cfg.dtype, log=log)
        log(f"wrote {path} ({path.stat().st_size / 2**20:,.1f} MB, {cfg.dtype})")


def main() -> None:
    precheck_overrides(str(config_dir()), "export", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
