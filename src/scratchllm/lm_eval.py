"""``python -m scratchllm.lm_eval [lm-eval options]``: lm-evaluation-harness's own command line, with our model.

lm-eval 0.4 finds models only in its registry and has no plugin discovery, so this wrapper imports
``scratchllm.evaluation.harness`` (which registers ``--model scratchllm``) and hands the command line to lm-eval::

    python -m scratchllm.lm_eval write-tasks shakespeare_next_line my_quiz.jsonl --out lm_eval_tasks
    HF_DATASETS_OFFLINE=1 python -m scratchllm.lm_eval --model scratchllm --model_args ckpt_path=last \\
        --tasks shakespeare_next_line --include_path lm_eval_tasks/

``write-tasks`` writes our multiple-choice tasks (built-in names or .jsonl files, as ``scratchllm.evaluate``'s
``tasks=`` takes them) as local lm-eval tasks: the items plus a YAML that reads them offline.
Needs the ``lm-eval`` package (the ``eval`` extra).
"""

from __future__ import annotations

import argparse
import sys

from scratchllm.cli import report_user_errors


def write_tasks(argv: list[str]) -> None:
    from scratchllm.evaluation.harness import write_task
    from scratchllm.evaluation.session import load_task

    parser = argparse.ArgumentParser(prog="python -m scratchllm.lm_eval write-tasks",
                                     description="write tasks as local lm-eval tasks (JSONL + YAML)")
    parser.add_argument("tasks", nargs="+", help="built-in task names or .jsonl files")
    parser.add_argument("--out", default="lm_eval_tasks", help="folder for --include_path (default lm_eval_tasks)")
    parser.add_argument("--limit", type=int, default=None, help="items per task (built-in default 200)")
    parser.add_argument("--seed", type=int, default=0, help="which items a built-in task draws")
    args = parser.parse_args(argv)
    for spec in args.tasks:
        print(f"wrote {write_task(load_task(spec, args.limit, args.seed), args.out)}", file=sys.stderr)


def main() -> None:
    try:
        from lm_eval.__main__ import cli_evaluate
    except ModuleNotFoundError:
        print("error: python -m scratchllm.lm_eval needs lm-evaluation-harness; pip install lm-eval", file=sys.stderr)
        raise SystemExit(2) from None
    import scratchllm.evaluation.harness  # noqa: F401 - registers --model scratchllm

    with report_user_errors():  # a bad ckpt_path, task or tokenizer: one line, exit 2
        if sys.argv[1:2] == ["write-tasks"]:
            write_tasks(sys.argv[2:])
        else:
            cli_evaluate()


if __name__ == "__main__":
    main()
