"""The GUI in a real browser: `streamlit run` on a free local port, each page loaded in Chromium.

Uses the system's Chromium (Debian package) through Playwright; skipped when it is absent.
A screenshot of every page is saved in the test's temporary folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from modis_app_fixtures import MAIN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(populated_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run main.py` against the populated run directory; yields its base URL."""
    run_dir, _ = populated_run
    port = _free_port()
    log = (tmp_path_factory.mktemp("streamlit") / "server.log").open("wb")
    env = {**os.environ, "MODIS_RUN_DIR": str(run_dir), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(MAIN), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# (url path, heading, text that must be visible once the page has rendered)
PAGES = [
    ("", "Evolve", "Verification budget per rung"),
    ("tree", "Evolution tree", "Hover a node"),
    ("leaderboard", "Leaderboard", "Download CSV"),
    ("design?design=gpt2-swap-0", "Design viewer", "Parents"),
    ("verify", "Verify", "Start a verification"),
    ("knowledge", "Knowledge", "Type a query to search the library"),
    ("config", "Config", "Ladder of scales"),
]


def test_every_page_renders_in_chromium(server: str, populated_run: tuple[Path, dict], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    _, facts = populated_run
    shots: list[Path] = []
    with sync_playwright() as pw:
        # a fresh profile folder: the persistent context passes it as --user-data-dir
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for path, heading, text in PAGES:
                page.goto(f"{server}/{path}", wait_until="domcontentloaded")
                page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
                page.get_by_text(text).first.wait_for(timeout=60_000)
                if path == "tree":
                    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                    page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=60_000)
                    assert page.locator(".js-plotly-plot .scatterlayer .point").count() == len(facts["names"])
                if path == "leaderboard":
                    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
                if path.startswith("design"):
                    page.get_by_role("heading", name="gpt2-swap-0").first.wait_for(timeout=60_000)
                    page.get_by_role("tab", name="Training").click()
                    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                assert page.locator("[data-testid='stException']").count() == 0, f"/{path} shows an exception"
                page.wait_for_timeout(1500)  # let charts and tables finish drawing
                shot = tmp_path / f"{path.split('?')[0] or 'evolve'}.png"
                page.screenshot(path=str(shot), full_page=True)
                shots.append(shot)
            # clicking a node of the tree opens that design in the design viewer
            page.goto(f"{server}/tree", wait_until="domcontentloaded")
            point = page.locator(".js-plotly-plot .scatterlayer .point").first
            point.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            box = point.bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.get_by_role("heading", name="Design viewer").first.wait_for(timeout=60_000)
            assert "/design" in page.url
            assert not errors, errors
        finally:
            browser.close()
    print("\nscreenshots:\n" + "\n".join(str(s) for s in shots))
    assert all(s.stat().st_size > 10_000 for s in shots)
