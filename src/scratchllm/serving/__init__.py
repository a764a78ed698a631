"""Serving a model: an OpenAI-compatible HTTP API and a playground page, built on ``scratchllm.generation``.

``engine`` runs requests on one loaded model (one at a time), ``api`` is the FastAPI app, ``chat`` renders a
messages list, ``inspect`` looks inside a forward pass (token probabilities, attention), ``server`` starts uvicorn.
"""
