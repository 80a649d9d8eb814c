"""The GUI in a real browser: `streamlit run` on a free local port, each page loaded in Chromium.

Uses the system's Chromium (Debian package) through Playwright; skipped when it is absent.
A screenshot of every page is saved in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from modis_app_fixtures import MAIN

from model_discovery.app import jobs
from model_discovery.config import SystemConfig
from model_discovery.evolution import EvolutionTree

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


@contextmanager
def _streamlit(run_dir: Path, log_dir: Path) -> Iterator[str]:
    """`streamlit run main.py` on a free local port against ``run_dir``; yields its base URL."""
    port = _free_port()
    log = (log_dir / "server.log").open("wb")
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


@pytest.fixture(scope="module")
def server(populated_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The GUI over the populated run directory."""
    with _streamlit(populated_run[0], tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@contextmanager
def _browser(tmp_path: Path) -> Iterator[Any]:
    """A Chromium page (fresh profile) that records page errors in ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # a fresh profile folder: the persistent context passes it as --user-data-dir
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            yield page
        finally:
            browser.close()


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's folder (and in ``$MODIS_SCREENSHOT_DIR`` when set)."""
    page.wait_for_timeout(1500)  # let charts and tables finish drawing
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("MODIS_SCREENSHOT_DIR"):
        out = Path(os.environ["MODIS_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)
    return shot


# (url path, heading, text that must be visible once the page has rendered)
PAGES = [
    ("", "Evolve", "Verification budget per rung"),
    ("tree", "Evolution tree", "Hover a node"),
    ("leaderboard", "Leaderboard", "Download CSV"),
    ("design?design=gpt2-swap-0", "Design viewer", "Parents"),
    ("compare", "Compare designs", "Parent → child: what changed"),
    ("charts", "Run charts", "Fitness counts only results"),
    ("verify", "Verify", "Start a verification"),
    ("knowledge", "Knowledge", "Type a query to search the library"),
    ("config", "Config", "Ladder of scales"),
]


def test_every_page_renders_in_chromium(server: str, populated_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, facts = populated_run
    shots: list[Path] = []
    with _browser(tmp_path) as page:
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
                page.get_by_text("ranked on one footing").first.wait_for(timeout=60_000)
            if path.startswith("design"):
                page.get_by_role("heading", name="gpt2-swap-0").first.wait_for(timeout=60_000)
                page.get_by_role("tab", name="Training").click()
                page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            if path == "compare":  # the newest design against its parent; curves with the baseline
                page.get_by_text("units changed from").first.wait_for(timeout=60_000)
                page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                page.get_by_text("(baseline)").first.wait_for(timeout=60_000)
            if path == "charts":
                page.get_by_text("best and mean fitness per generation").first.wait_for(timeout=60_000)
                page.get_by_text("verification budget used per rung").first.wait_for(timeout=60_000)
                assert page.locator(".js-plotly-plot").count() == 3
            assert page.locator("[data-testid='stException']").count() == 0, f"/{path} shows an exception"
            shots.append(_shot(page, tmp_path, path.split("?")[0] or "evolve"))
        # a link to an unknown design says so instead of opening another one
        page.goto(f"{server}/design?design=no-such-design", wait_until="domcontentloaded")
        page.get_by_text("No design named `no-such-design`".replace("`", "")).first.wait_for(timeout=60_000)
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
        assert not page.errors, page.errors
    print("\nscreenshots:\n" + "\n".join(str(s) for s in shots))
    assert all(s.stat().st_size > 10_000 for s in shots)


def test_evolve_continues_the_run_and_shows_differences_first(server: str, populated_run: tuple[Path, dict],
                                                              tmp_path: Path) -> None:
    run_dir, _ = populated_run
    with _browser(tmp_path) as page:
        page.goto(f"{server}/", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Continue this run").first.wait_for(timeout=60_000)
        page.get_by_text("Same settings as the run: it continues as it was.").wait_for(timeout=60_000)
        _shot(page, tmp_path, "evolve-continue")
        page.get_by_text("Run lm-eval after training").click()
        page.get_by_text("1 setting(s) differ from this run's config.yaml").wait_for(timeout=60_000)
        start = page.get_by_role("button", name="Start run")
        assert start.is_disabled()  # nothing starts before the differences are confirmed
        _shot(page, tmp_path, "evolve-differences")
        page.get_by_text("Start with these differences").click()
        page.wait_for_function("() => ![...document.querySelectorAll('button')].find("
                               "b => b.innerText.includes('Start run')).disabled", timeout=60_000)
        assert not page.errors, page.errors
    assert not (run_dir / "discover.json").exists()  # looking and confirming started nothing


def _live(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive


def test_stop_leaves_no_process_lease_or_folder(tmp_path: Path) -> None:
    """Start a run from the Evolve page, wait for a sandboxed training, press Stop: every process
    the run started is gone, no lease is held, no sandbox folder is left, no result was stored."""
    run_dir = tmp_path / "live_run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(SystemConfig(run_dir=run_dir, seeds=["gpt2"], steps=2, ladder=["micro"],
                                                      verify={"wandb": False}).to_yaml())
    with _streamlit(run_dir, tmp_path) as url, _browser(tmp_path) as page:
        page.goto(f"{url}/", wait_until="domcontentloaded")
        page.get_by_text("Same settings as the run: it continues as it was.").wait_for(timeout=60_000)
        page.get_by_role("button", name="Start run").click()
        page.get_by_role("button", name="Stop run").wait_for(timeout=60_000)
        # the trainer's progress shows on the page: design, step, loss and ETA
        page.get_by_text("verify gpt2@micro: step").first.wait_for(timeout=400_000)
        page.get_by_text("phase:").first.wait_for(timeout=60_000)
        _shot(page, tmp_path, "evolve-running")
        status = jobs.job_status(run_dir, "discover")
        procs = jobs.job_processes(status.pid)
        folders = jobs.sandbox_folders(procs)
        tree = EvolutionTree(run_dir / "tree.sqlite")
        assert tree.leases(live_only=True), "a verification holds a lease while it trains"
        assert folders and any(p.name() == "bwrap" or "model_discovery.check._child" in " ".join(p.cmdline())
                               for p in procs if p.is_running())
        t0 = time.monotonic()
        page.get_by_role("button", name="Stop run").click()
        page.get_by_text("Run stopped: no process of it is left").wait_for(timeout=60_000)
        print(f"\nstop took {time.monotonic() - t0:.1f} s; {len(procs)} processes, {len(folders)} sandbox folders")
        _shot(page, tmp_path, "evolve-stopped")
        assert not _live({p.pid for p in procs})
        assert not [f for f in folders if f.exists()]
        assert tree.leases(live_only=True) == []
        assert [r for r in tree.results() if r.status == "failed"] == []  # a stop is no failed verification
        assert jobs.job_status(run_dir, "discover").state == "stopped"
        assert not page.errors, page.errors
        tree.close()
