"""Pictures of runs and models (matplotlib, PNG, headless): ``runs`` reads curves, ``figures`` draws them,
``command`` is what ``python -m scratchllm.plot`` does."""
