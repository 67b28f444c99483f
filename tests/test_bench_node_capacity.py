"""The node capacity benchmark's command line refuses bad options in one line (exit 2), and
its CPU count of a process includes the process's children."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.benchfix import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_node_capacity")


@pytest.mark.parametrize(("argv", "message"), [
    (["--seconds", "0"], "--seconds must be more than 0"),
    (["--min-cameras", "0"], "--min-cameras must be at least 1"),
    (["--min-cameras", "5", "--max-cameras", "4"], "--max-cameras must be at least"),
    (["--nodes", "0"], "--nodes must be at least 1"),
    (["--node-workers", "0"], "--node-workers must be at least 1"),
    (["--only", "both"], "invalid choice"),
    ([], "short_hamilton_clip.mp4"),  # --data: an empty folder
])
def test_bad_options_are_refused_in_one_line(bench, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["--data", str(tmp_path), *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cpu_seconds_count_the_children(bench):
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               f"subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
                               "time.sleep(5)\n"])
    try:
        time.sleep(2.5)  # the child has burnt its 0.6 s and may have ended (cutime)
        assert bench.cpu_seconds(parent.pid) >= 0.5
        assert bench.cpu_seconds(os.getpid()) > 0
    finally:
        parent.kill()
        parent.wait()
