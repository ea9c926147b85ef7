"""The supervisor's restart bookkeeping, without processes: every restart is counted
(``syndicate status`` and the crash tests read it), while the backoff only grows for a
child that keeps dying within a minute of its start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.registry import service
from shared.settings import Settings
from syndicate import supervisor as sup


class Dead:
    """A child process that has exited."""

    pid = 4242

    def poll(self) -> int:
        return -9


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[sup.Supervisor, list[float]]:
    s = sup.Supervisor(Settings(state_dir=tmp_path), (service("router"),), auth=False)
    clock = [1000.0]
    monkeypatch.setattr(sup.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(s, "write_record", lambda state: None)

    def spawn(child: Any) -> None:
        child.proc, child.started_at = Dead(), clock[0]

    monkeypatch.setattr(s, "_spawn", spawn)
    s.children = [sup.Child(spec=service("router"), env={})]
    spawn(s.children[0])
    return s, clock


def test_a_long_lived_child_killed_counts_one_restart_and_comes_back_at_once(stack) -> None:  # type: ignore[no-untyped-def]
    s, clock = stack
    clock[0] += 120  # ran two minutes, then died
    s.step()
    child = s.children[0]
    assert (child.restarts, child.crash_streak, child.next_start) == (1, 0, clock[0] + 1.0)
    clock[0] += 1.0
    s.step()
    assert child.started_at == clock[0] and child.next_start == 0.0


def test_a_crash_loop_backs_off_and_every_restart_counts(stack) -> None:  # type: ignore[no-untyped-def]
    s, clock = stack
    child = s.children[0]
    waits = []
    for _ in range(7):
        clock[0] += 0.5  # dies half a second after each start
        s.step()
        waits.append(child.next_start - clock[0])
        clock[0] = child.next_start
        s.step()  # restarted
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert child.restarts == 7
