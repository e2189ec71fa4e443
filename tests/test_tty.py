"""The dashboard in a real terminal: ``wirelearn replay`` inside tmux, then Ctrl-C.

tmux gives the process a real pseudo-terminal of a known size; the pane is
captured while the replay runs (header, tables and chart must be on screen, and
every row must be a whole panel row: nothing wrapped), then Ctrl-C must stop
the run cleanly: the final summary printed and exit status 0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT

from wirelearn.capture import read_batches
from wirelearn.scenarios import write_scenario

WIRELEARN = Path(sys.executable).with_name("wirelearn")
WIDTH, HEIGHT = 160, 50
BRAILLE = re.compile("[\u2801-\u28ff]")


def cli_ready() -> bool:
    """The replay command exists (the CLI is written in parallel with the dashboard)."""
    if not WIRELEARN.exists():
        return False
    try:
        done = subprocess.run(
            [str(WIRELEARN), "replay", "--help"], capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
    pytest.mark.skipif(not cli_ready(), reason="`wirelearn replay --help` does not exit 0 yet"),
]


def capture_span(path: Path) -> float:
    first = last = None
    for batch in read_batches(path):
        if len(batch):
            first = int(batch.ts_ns[0]) if first is None else first
            last = int(batch.ts_ns[-1])
    assert first is not None and last is not None
    return (last - first) / 1e9


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Path, Path, float]:
    """The mixed scenario and its labels, with a --speed that keeps it running ~20 s."""
    pcap, labels = (
        FIXTURES / "scenarios" / "mixed.pcap",
        FIXTURES / "scenarios" / "mixed.labels.csv",
    )
    if not (pcap.is_file() and labels.is_file()):
        pcap, labels = tmp_path / "mixed.pcap", tmp_path / "mixed.labels.csv"
        write_scenario("mixed", pcap, labels, frames=20_000, seed=0)
    return pcap, labels, max(0.01, capture_span(pcap) / 20.0)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """A private tmux server (its own socket), killed afterwards."""
    cmd = ["tmux", "-L", f"wirelearn-tty-{tmp_path.name}"]
    yield cmd
    subprocess.run([*cmd, "kill-server"], capture_output=True, check=False)


def pane(tmux: list[str], *, history: bool = False) -> str:
    """The pane's screen (with ``history``, also what scrolled off the top)."""
    extra = ["-S", "-"] if history else []
    done = subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "tty", *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def wait_until(tmux: list[str], pred: Callable[[str], bool], timeout: float) -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = pane(tmux)
        if pred(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out; the pane shows:\n{text}")


def test_replay_dashboard_in_tmux_then_ctrl_c(
    tmux: list[str], scenario: tuple[Path, Path, float], tmp_path: Path
) -> None:
    pcap, labels, speed = scenario
    rc = tmp_path / "rc"
    # A shell records the exit status in a file: tmux 3.3 sometimes leaves the pane's
    # process unreaped, so #{pane_dead_status} cannot be trusted. `trap : INT` keeps that
    # shell alive through Ctrl-C (a caught signal is reset to default in the child, so
    # wirelearn still gets it). The arguments go to tmux separately: no quoting.
    # CI=... would turn the dashboard off (should_use_dashboard), and a tmux server started
    # from pytest hands its panes COLUMNS=80 LINES=24, which rich prefers to the pty size.
    wrapper = ["sh", "-c", f'trap : INT; "$@"; echo $? > "{rc}"', "sh"]
    env = ["env", "-u", "CI", "-u", "COLUMNS", "-u", "LINES"]
    replay = [str(WIRELEARN), "replay", str(pcap), "--labels", str(labels)]
    replay += ["--speed", f"{speed:.4f}"]
    session = ["new-session", "-d", "-s", "tty", "-c", str(ROOT)]
    session += ["-x", str(WIDTH), "-y", str(HEIGHT), *wrapper, *env, *replay]
    keep = ["set-option", "-t", "tty", "remain-on-exit", "on"]
    subprocess.run([*tmux, "-f", "/dev/null", *session, ";", *keep], check=True)

    def dashboard_up(text: str) -> bool:
        return "recent frames" in text and "rolling accuracy" in text and bool(BRAILLE.search(text))

    screen = wait_until(tmux, dashboard_up, timeout=60)
    rows = screen.splitlines()
    assert len(rows) <= HEIGHT
    assert "wirelearn" in rows[1] and "mixed" in rows[1] and "elapsed" in rows[1]
    assert "fr/s" in screen and "Mbit/s" in screen and "ETA" in screen
    assert "roll acc" in screen and "baseline" in screen
    assert "100%┤" in screen and "0%┤" in screen
    # Every row is a whole row of panels: nothing wrapped or left over.
    boxed = [r for r in rows if r.strip()]
    assert len(boxed) == HEIGHT
    assert all(r[0] in "╭│╰" and r.rstrip()[-1] in "╮│╯" for r in boxed), screen
    assert not rc.exists(), "the replay ended before it was interrupted"

    subprocess.run([*tmux, "send-keys", "-t", "tty", "C-c"], check=True)
    end = time.monotonic() + 60
    while not (rc.exists() and rc.read_text().strip()) and time.monotonic() < end:
        time.sleep(0.2)
    after = pane(tmux, history=True)
    assert rc.exists(), after
    assert rc.read_text().strip() == "0", after
    assert "wirelearn summary" in after
    # The alternate screen is gone: no dashboard rows remain around the summary.
    assert "recent frames" not in after and not BRAILLE.search(after)
