"""The sandbox primitive: legitimate torch keeps working after lockdown; misbehaviour of the
child is reported as an outcome, never raised, and never harms the calling process."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from model_discovery.check.sandbox import SandboxLimits, SandboxOutcome, kill_sandboxes, live_sandboxes, run_sandboxed

RUN = "model_discovery.check.probe:run_untrusted"


def untrusted(body: str, **limits: object) -> SandboxOutcome:
    """Run ``def main(): <body>`` as untrusted code (``torch`` imported) in the sandbox."""
    source = "import torch\n\ndef main():\n" + "".join(f"    {ln}\n" for ln in body.splitlines())
    return run_sandboxed(RUN, {"source": source}, SandboxLimits(**{"wall_time_s": 60.0, **limits}))


def test_torch_still_works_after_lockdown() -> None:
    out = run_sandboxed("model_discovery.check.probe:torch_workout", {"threads": 2},
                        SandboxLimits(wall_time_s=60, threads=2))
    assert out.ok, out.error
    res = out.result
    assert res["threads"] == 2 and res["loss_fell"] and res["sdpa"] == [2, 2, 8, 4]
    assert res["fft"] == pytest.approx(3.0) and res["eigh"] == pytest.approx(2.0)
    assert res["normal"] == pytest.approx(-0.9189385, rel=1e-5)
    assert res["thread"] == 4.0 and res["reloaded"] == 4 and res["read_own_file"]
    assert out.peak_rss_bytes > 50 * 2**20 and out.wall_s > 0


def test_round_trip_and_progress_events() -> None:
    out = run_sandboxed("model_discovery.check.probe:echo", {"a": [1, 2], "b": "x"}, SandboxLimits(wall_time_s=60))
    assert out.ok and out.result == {"payload": {"a": [1, 2], "b": "x"}}
    assert out.phase == "echo" and out.events == [{"phase": "echo"}]


def test_fork_is_denied() -> None:
    out = untrusted("while True:\n    torch.serialization.os.fork()")
    assert out.kind == "violation" and "os.fork" in out.error


def test_swallowed_violation_is_still_reported() -> None:
    out = untrusted("try:\n    torch.serialization.os.system('true')\nexcept Exception:\n    pass\nreturn 1")
    assert not out.ok and out.kind == "violation" and "os.system" in out.error


def test_network_is_denied() -> None:
    out = untrusted("return torch.hub.urlopen('http://127.0.0.1:9/', timeout=2).read()")
    assert out.kind == "violation" and "network" in out.error


def test_subprocess_import_and_spawn_are_denied() -> None:
    out = untrusted("import subprocess\nreturn subprocess.run(['true'])")
    assert out.kind == "violation" and "import of 'subprocess'" in out.error
    # real __import__ reached through a trusted function's globals: spawning is still denied
    out = untrusted("imp = torch.nn.Module.__init__.__globals__['__builtins__']['__import__']\n"
                    "return imp('subprocess').run(['true'])")
    assert out.kind == "violation" and "process creation" in out.error


def test_writes_outside_work_dir_are_denied(tmp_path: Path) -> None:
    target = tmp_path / "leak.pt"
    out = untrusted(f"torch.save(torch.ones(2), {str(target)!r})\nreturn 1")
    assert out.kind == "violation" and "write outside" in out.error and str(target) in out.error
    assert not target.exists()
    # inside the work dir (cwd and HOME of the child) writing is fine
    out = untrusted("torch.save(torch.ones(2), 'ok.pt')\nreturn torch.load('ok.pt').sum().item()")
    assert out.ok and out.result == {"value": "2.0"}


def test_timeout_kills_the_process_group() -> None:
    out = untrusted("while True:\n    pass", wall_time_s=12.0)
    assert out.kind == "timeout" and "timeout" in out.error and "untrusted" in out.error
    assert out.wall_s < 30


def test_memory_watchdog() -> None:
    out = untrusted("keep = []\nwhile True:\n    keep.append(torch.ones(2**24))",
                    memory_bytes=1536 * 2**20)
    assert out.kind == "memory" and "memory" in out.error
    assert out.peak_rss_bytes > 1024 * 2**20


def test_exception_and_crash_are_outcomes() -> None:
    out = untrusted("raise ValueError('bad\\nthing')")
    assert out.kind == "exception" and out.error.startswith("ValueError: bad thing")
    out = untrusted("torch.serialization.os._exit(3)")
    assert out.kind == "crash" and "code 3" in out.error


def test_caller_is_untouched(tmp_path: Path) -> None:
    cwd, home = os.getcwd(), os.environ.get("HOME")
    untrusted("torch.serialization.os.chdir('/')\nreturn 0")
    assert os.getcwd() == cwd and os.environ.get("HOME") == home


def test_bad_target_is_an_outcome() -> None:
    out = run_sandboxed("model_discovery.check.no_such_module:f", {}, SandboxLimits(wall_time_s=60))
    assert out.kind == "exception" and "failed to load" in out.error
    with pytest.raises(ValueError):
        run_sandboxed("no_colon", {}, SandboxLimits())


def test_kill_sandboxes_ends_every_child_and_its_folders() -> None:
    """What a stopping process does: its sandboxed children die now and leave no folder behind."""
    before = set(Path(tempfile.gettempdir()).glob("modis-sbx-*"))
    outcome: list[SandboxOutcome] = []
    worker = threading.Thread(target=lambda: outcome.append(untrusted("while True:\n    pass")))
    worker.start()
    deadline = time.monotonic() + 30
    while not live_sandboxes() and time.monotonic() < deadline:
        time.sleep(0.05)
    mine = set(Path(tempfile.gettempdir()).glob("modis-sbx-*")) - before
    assert live_sandboxes() and mine
    assert kill_sandboxes() == 1
    worker.join(timeout=30)
    assert outcome and outcome[0].kind == "crash" and "SIGKILL" in outcome[0].error
    assert live_sandboxes() == [] and not [d for d in mine if d.exists()]
