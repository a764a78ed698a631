"""The playground in a real headless Chromium (Debian's, through selenium): type a prompt, see the answer stream in,
then the token view (probability shading, alternatives on hover) and the attention heatmaps."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.serving import serving_fixtures  # noqa: F401 - puts experiments/ on the path
from serving_harness import browser, drive_chat, drive_playground, find_browser, running_server

pytestmark = pytest.mark.slow
found = find_browser()


@pytest.mark.skipif(isinstance(found, str), reason=f"no browser: {found}")
def test_playground_streams_and_shows_probabilities_and_attention(tiny_ckpt: Path, tmp_path: Path) -> None:
    with running_server(tiny_ckpt, tmp_path) as base, browser() as driver:
        seen = drive_playground(driver, base, "ROMEO:", max_tokens=40, screenshot=tmp_path / "playground.png")
        conversation = drive_chat(driver, "Who are you?")
    assert (tmp_path / "playground.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["status"].startswith("40 tokens in")
    # streamed: the page appended the answer chunk by chunk (one SSE chunk per character here), not all at once
    assert seen["chunks"] >= 20, seen
    assert seen["tokens"] == len("ROMEO:") + 40  # char model: one token per character, prompt included
    assert "model expected:" in seen["tooltip"] and "p = " in seen["tooltip"]
    assert seen["heatmaps"] == 2 * 4  # layers × heads of the tiny model
    assert conversation.startswith("User: Who are you?\nAssistant:")  # chat mode keeps the turns
    caption = seen["attention_caption"]
    assert caption.startswith("— layer 0, head 0") and "attends most to" in caption
