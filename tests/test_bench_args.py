"""The live benchmark's command line: options after ``--`` reach ``openlfr watch`` wherever
the benchmark's own options stand."""

from __future__ import annotations

import pytest

from tests.benchfix import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_live")


@pytest.mark.parametrize(("argv", "seconds", "extra"), [
    (["latency", "--", "--backend", "sface"], None, ["--backend", "sface"]),
    (["latency", "--seconds", "20", "--", "--backend", "sface"], 20.0, ["--backend", "sface"]),
    (["capacity", "--seconds", "20", "--min-cameras", "8"], 20.0, []),
])
def test_options_after_the_double_dash_go_to_watch(bench, argv, seconds, extra):
    args = bench.parse_args(bench.build_parser(), argv)
    assert args.seconds == seconds and args.extra == extra


def test_every_camera_must_alert_the_expected_person(bench):
    alerts = [{"subject": "lin-manuel-miranda", "camera": "a"}]
    assert bench.check_subjects(alerts, ["a"])["correct"] is True
    missed = bench.check_subjects(alerts, ["a", "b"])
    assert missed["correct"] is False and missed["cameras_without_every_expected_alert"] == ["b"]
    assert bench.check_subjects([*alerts, {"subject": "obama", "camera": "a"}],
                                ["a"])["correct"] is False
