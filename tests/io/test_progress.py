"""Progress lines where stderr is no terminal (:mod:`varscore.io.progress`): one line per interval of
a fake clock, with the right done/total, rate and ETA; nothing when disabled; the interval from
``VARSCORE_PROGRESS_INTERVAL``; and a real non-terminal run of the README's main command prints them."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from varscore.io.progress import (
    DEFAULT_INTERVAL,
    INTERVAL_VARIABLE,
    Progress,
    duration_text,
    interval_seconds,
    progress_iter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def caplog() -> Iterator[Lines]:
    """The progress lines, caught on their own logger (the command line stops them propagating)."""
    lines = Lines()
    log = logging.getLogger("varscore.io.progress")
    level = log.level
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    yield lines
    log.removeHandler(lines)
    log.setLevel(level)


def _progress_messages(caplog: Lines) -> list[str]:
    return caplog.messages


def test_a_line_per_interval_with_done_total_rate_and_eta(caplog: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_VARIABLE, raising=False)
    clock = FakeClock()
    with Progress(600, "annotate", "windows", terminal=False, clock=clock) as progress:
        for _ in range(600):
            clock.now += 0.25  # 4 windows a second: one line every 40 windows (10 s)
            progress.update()
    messages = _progress_messages(caplog)
    # at 10 s, 20 s, ... 150 s: 15 lines, then the closing one
    assert len(messages) == 16
    assert messages[0] == "annotate 40/600 windows, 4.0/s, ETA 2m20s"
    assert messages[5] == "annotate 240/600 windows, 4.0/s, ETA 1m30s"
    assert messages[14] == "annotate 600/600 windows, 4.0/s, ETA 0s"
    assert messages[-1] == "annotate 600/600 windows in 2m30s"
    done = [int(re.match(r"annotate (\d+)/600", m).group(1)) for m in messages[:-1]]  # type: ignore[union-attr]
    assert done == list(range(40, 601, 40))


def test_uneven_steps_and_an_unknown_total(caplog: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "30")
    clock = FakeClock()
    progress = Progress(None, "annotate --mode variant", "records", terminal=False, clock=clock)
    for seconds, n in [(10, 5), (15, 5), (10, 20), (40, 1), (5, 1)]:  # at 10, 25, 35, 75, 80 s
        clock.now += seconds
        progress.update(n)
    progress.close()
    assert _progress_messages(caplog) == [
        "annotate --mode variant 30 records, 0.9/s",  # 35 s: the first 30 s passed; no ETA without a total
        "annotate --mode variant 31 records, 0.4/s",  # 75 s: 30 s after the last line
        "annotate --mode variant 32 records in 1m20s",
    ]


def test_short_work_disabled_work_and_failed_work_say_nothing(caplog: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_VARIABLE, raising=False)
    clock = FakeClock()
    with Progress(10, "ism", "alleles", terminal=False, clock=clock) as quick:
        clock.now += 9.9
        quick.update(10)
    with Progress(10, "ism", "alleles", enabled=False, terminal=False, clock=clock) as off:  # -q, --no-progress
        clock.now += 100
        off.update(10)
    with pytest.raises(RuntimeError), Progress(10, "ism", "alleles", terminal=False, clock=clock) as failing:
        clock.now += 11
        failing.update(1)
        raise RuntimeError
    assert _progress_messages(caplog) == ["ism 1/10 alleles, 0.091/s, ETA 1m39s"]  # no closing line after a failure


def test_progress_iter_counts_each_item(caplog: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "0.000001")  # every item a line (the real clock always advances)
    assert list(progress_iter(["a", "b", "c"], "drivers", "genes", enabled=True)) == ["a", "b", "c"]
    messages = _progress_messages(caplog)
    counts = [m.split(" ")[1] for m in messages[:-1]]
    assert counts == ["1/3", "2/3", "3/3"] and messages[-1].startswith("drivers 3/3 genes in ")


@pytest.mark.parametrize(
    ("value", "expected"), [("2.5", 2.5), ("0", DEFAULT_INTERVAL), ("-1", DEFAULT_INTERVAL), ("soon", DEFAULT_INTERVAL)]
)
def test_the_interval_setting(value: str, expected: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, value)
    assert interval_seconds() == expected


def test_durations() -> None:
    assert [duration_text(s) for s in (0, 12.4, 155, 3600 + 4 * 60 + 59)] == ["0s", "12s", "2m35s", "1h04m"]


@pytest.mark.slow
def test_a_run_whose_stderr_is_a_file_logs_progress_lines(tmp_path: Path) -> None:
    """The README's main command with stderr to a file (a batch job's log): progress lines appear,
    prefixed ``varscore:``, with the allele counts rising to the total."""
    import varscore

    root = Path(varscore.__file__).resolve().parent.parent
    vcf = root / "varscore" / "examples" / "data" / "cohort.vcf.gz"
    env = {**os.environ, INTERVAL_VARIABLE: "0.2", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "log", "w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "varscore", "annotate", str(vcf), "--model", "variformer-demo", "-o", "out.vcf.gz"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            check=False,
            timeout=900,
        )
    text = (tmp_path / "log").read_text()
    assert done.returncode == 0, text
    found = re.findall(r"^varscore: annotate (\d+)/(\d+) alleles, [\d.]+/s, ETA \w+$", text, re.MULTILINE)
    assert len(found) >= 2, text
    totals = {int(t) for _, t in found}
    counts = [int(d) for d, _ in found]
    assert len(totals) == 1 and counts == sorted(counts) and counts[-1] <= totals.pop()
    assert re.search(r"^varscore: annotate (\d+)/\1 alleles in \w+$", text, re.MULTILINE), text
    assert "\r" not in text  # no bar redrawn into the log


def test_annotate_prints_progress_lines_unless_quiet(
    toy_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from tests.conftest import write_vcf
    from varscore.cli import cli

    seqs = toy_world["seqs"]
    vcf = write_vcf(
        tmp_path / "in.vcf",
        [("chr1", p, seqs["chr1"][p - 1], "ACGT".replace(seqs["chr1"][p - 1], "")[0]) for p in (190, 200, 255)],
    )
    monkeypatch.setenv(INTERVAL_VARIABLE, "0.000001")
    args = ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "out.vcf")]
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.stderr.splitlines() if line.startswith("varscore: annotate ")]
    assert lines and lines[-1].startswith("varscore: annotate ") and " alleles in " in lines[-1]
    quiet = CliRunner().invoke(cli, [*args, "-q"])
    assert quiet.exit_code == 0 and "varscore: annotate" not in quiet.stderr
    silent = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert silent.exit_code == 0 and "varscore: annotate" not in silent.stderr
