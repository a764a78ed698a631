"""Start ``python -m scratchllm.serve`` as a user would and drive its playground in a real browser.

Shared by the serving tests (tests/serving/), the load test (bench_serve.py) and the README screenshot:

    .venv/bin/python experiments/serving_harness.py ckpt_path=<checkpoint> [prompt="ROMEO:"] [max_tokens=80] \
        [out=experiments/results/playground.png]

The browser is Debian's ``chromium`` through its ``chromium-driver`` (selenium is told both paths, so nothing is
downloaded); ``find_browser`` says why there is none when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install it with: sudo apt-get install -y chromium chromium-driver (and pip install selenium)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(ckpt: str | Path, cwd: str | Path, *extra: str, timeout: float = 60.0) -> Iterator[str]:
    """The server on a free loopback port; yields its base URL, then stops it (terminate, then kill)."""
    cwd = Path(cwd)
    port = free_port()
    cmd = [sys.executable, "-m", "scratchllm.serve", f"ckpt_path={ckpt}", "host=127.0.0.1", f"port={port}",
           "threads=1", *extra]
    log_path = cwd / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(base):
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no /health after {timeout} s:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ the browser
def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or the reason there is no browser to test with."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed; {INSTALL_HINT}"
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return f"no {'chromium' if browser is None else 'chromedriver'} on PATH; {INSTALL_HINT}"
    return browser, driver


@contextlib.contextmanager
def browser(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven by selenium, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if isinstance(found, str):
        raise RuntimeError(found)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def drive_playground(driver: Any, base: str, prompt: str, *, max_tokens: int = 60, seed: int = 1,
                     screenshot: Path | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Open the page, type ``prompt``, generate, wait for the token and attention views, hover a token.

    Returns what a person would see: the output text, the token count, the hover tooltip, the attention caption,
    how many heatmaps are drawn, the texts seen while polling, and how many chunks the page appended as they came
    (polling can miss intermediate states on a fast machine; the page's own count cannot)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    wait = WebDriverWait(driver, timeout, poll_frequency=0.02)
    wait.until(lambda d: "layers" in d.find_element(By.ID, "info").text)
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    for field, value in (("max_tokens", max_tokens), ("seed", seed)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    driver.find_element(By.ID, "go").click()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not driver.find_elements(By.CSS_SELECTOR, "#grid canvas"):  # the inspection arrives after the stream
        text = driver.find_element(By.ID, "output").text
        if not seen or seen[-1] != text:
            seen.append(text)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no attention view after {timeout} s; status: "
                               f"{driver.find_element(By.ID, 'status').text}")
        time.sleep(0.01)
    tokens = driver.find_elements(By.CSS_SELECTOR, "#output .tok")
    ActionChains(driver).move_to_element(tokens[-1]).perform()
    wait.until(lambda d: d.find_element(By.ID, "tip").is_displayed())
    result = {
        "output": driver.find_element(By.ID, "output").text,
        "status": driver.find_element(By.ID, "status").text,
        "tokens": len(tokens),
        "tooltip": driver.find_element(By.ID, "tip").text,
        "attention_caption": driver.find_element(By.ID, "attinfo").text,
        "heatmaps": len(driver.find_elements(By.CSS_SELECTOR, "#grid canvas")),
        "streamed": seen,
        "chunks": int(driver.find_element(By.ID, "output").get_attribute("data-chunks") or 0),
    }
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    return result


def drive_chat(driver: Any, message: str, *, timeout: float = 60.0) -> str:
    """On an open playground: switch to chat, send ``message``, wait for the answer; return the conversation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "input[name=mode][value=chat]").click()
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(message)
    driver.find_element(By.ID, "go").click()
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05)
    wait.until(lambda d: "assistant:" in d.find_element(By.ID, "history").text.lower())  # shown capitalised
    return driver.find_element(By.ID, "history").text


def main(argv: list[str]) -> None:
    if not argv or "-h" in argv or "--help" in argv:
        print(__doc__)
        sys.exit(0)
    bad = [a for a in argv if "=" not in a]
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    if bad or "ckpt_path" not in args:
        what = f"{bad[0]!r} is not key=value" if bad else "ckpt_path= is required"
        usage = "serving_harness.py ckpt_path=<checkpoint> [prompt=…] [max_tokens=…] [out=…]"
        print(f"error: {what}; usage: {usage}", file=sys.stderr)
        sys.exit(2)
    out = Path(args.get("out", "experiments/results/playground.png"))
    with running_server(args["ckpt_path"], Path.cwd()) as base, browser(height=1000) as driver:
        seen = drive_playground(driver, base, args.get("prompt", "ROMEO:"), max_tokens=int(args.get("max_tokens", 80)),
                                screenshot=out.resolve())
    print(f"{seen['tokens']} tokens, {seen['heatmaps']} heatmaps, screenshot {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
