"""Training-speed benchmark: machine ceilings, tokens/s, step time, peak memory and MFU of the Lightning Trainer
beside a plain PyTorch loop. Run ``python experiments/bench/run.py --help``; the module docs say what each part
measures and why."""
