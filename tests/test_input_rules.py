"""Input rules written once, in the services: the one time format
(:func:`openlfr.governance.times.parse_time`), the one ``NAME=SOURCE`` parser and camera-name
rule (:mod:`openlfr.video.sources`), the one threshold range check
(:func:`openlfr.vision.thresholds.check_threshold`), and the one "no threshold means the
model's current floor" (:func:`openlfr.governance.deployments.create`). Each front end uses
them; each refusal names the field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from openlfr.cli.deployments import parse_when
from openlfr.errors import InvalidInput
from openlfr.evaluation.fairness import run_fairness
from openlfr.governance import deployments as deps
from openlfr.governance.authz import RuleError
from openlfr.governance.floors import current_floor, record_floor
from openlfr.governance.times import form_time, parse_time
from openlfr.governance.watchlists import parse_expiry
from openlfr.video.pipeline import PipelineConfig
from openlfr.video.sources import (
    CAMERA_NAME,
    SourceError,
    SourceSpec,
    check_camera_name,
    split_camera,
)
from openlfr.vision.thresholds import check_threshold
from openlfr.web.routes.console_governance import _when, parse_cameras
from tests.govfix import Gov
from tests.test_gov_deployments import plan

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


# -- the one time format ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("90d", NOW + timedelta(days=90)),
    ("2h", NOW + timedelta(hours=2)),
    ("+2h", NOW + timedelta(hours=2)),
    ("30m", NOW + timedelta(minutes=30)),
    ("45s", NOW + timedelta(seconds=45)),
    ("12w", NOW + timedelta(weeks=12)),
    (" 1.5 h ", NOW + timedelta(minutes=90)),
    ("now", NOW),
    ("2026-06-01T08:00Z", datetime(2026, 6, 1, 8, tzinfo=UTC)),
    ("2026-06-01T08:00+02:00", datetime(2026, 6, 1, 6, tzinfo=UTC)),
    ("2026-06-01T08:00:30.5-01:00", datetime(2026, 6, 1, 9, 0, 30, 500000, tzinfo=UTC)),
])
def test_the_one_time_format(text: str, expected: datetime) -> None:
    when = parse_time(text, "planned_start", NOW)
    assert when == expected and when.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("text", "message"), [
    ("2026-06-01T08:00", "give a timezone"),  # no zone: refused, not guessed
    ("2026-06-01", "give a timezone"),  # a date alone is not a time
    ("tomorrow", "not a date and time"),
    ("5x", "not a date and time"),
    ("", "is required"),
    ("99999999999999d", "too far in the future"),
    ("9999-12-31T23:30-01:00", "after the year 9999"),
])
def test_what_the_time_format_refuses_names_the_field(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        parse_time(text, "planned_start", NOW)
    assert info.value.field == "planned_start" and "planned_start" in str(info.value)


def test_an_expiry_date_alone_is_the_end_of_that_day_in_utc() -> None:
    assert parse_expiry("2027-01-31", NOW) == datetime(2027, 2, 1, tzinfo=UTC)
    assert parse_expiry("90d", NOW) == NOW + timedelta(days=90)
    with pytest.raises(RuleError, match="expires '2027-01-31T18:00': give a timezone"):
        parse_expiry("2027-01-31T18:00", NOW)  # was taken as UTC before


def test_the_console_reads_its_utc_fields_and_nothing_else_without_a_zone() -> None:
    """The browser's datetime-local value has no zone: the form labels it UTC, and
    form_time (only there) says so; anything typed with a zone keeps it."""
    assert form_time("2026-06-01T08:00", "planned_start") == datetime(2026, 6, 1, 8,
                                                                        tzinfo=UTC)
    assert _when("2026-06-01T08:00:15", "planned_start") == datetime(2026, 6, 1, 8, 0, 15,
                                                                     tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    assert _when("2026-06-01T08:00+01:00", "planned_start") == datetime(2026, 6, 1, 8,
                                                                        tzinfo=cet)
    with pytest.raises(RuleError, match="planned_end 'soon'"):
        _when("soon", "planned_end")


def test_the_cli_takes_the_same_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_when("90d", "--end", NOW) == parse_time("90d", "x", NOW)
    assert parse_when("2026-06-01T08:00Z", "--start", NOW) == datetime(2026, 6, 1, 8,
                                                                       tzinfo=UTC)
    with pytest.raises(Exception) as info:  # typer.Exit(2): one line, the option named
        parse_when("2026-06-01T08:00", "--start", NOW)
    assert getattr(info.value, "exit_code", None) == 2
    assert "--start '2026-06-01T08:00': give a timezone" in capsys.readouterr().err


# -- the one camera parser and name rule ---------------------------------------------------------

@pytest.mark.parametrize("name", ["gate", "Gate-2", "a", "north.gate_3", "x" * 64])
def test_one_camera_name_rule_for_deployments_and_watch(name: str) -> None:
    assert CAMERA_NAME.match(name) and check_camera_name(name) == name
    assert SourceSpec.parse(f"{name}=rtsp://10.0.0.5/s").name == name
    assert deps.CameraSpec.parse(f" {name} = rtsp://10.0.0.5/s ") == deps.CameraSpec(
        name, "rtsp://10.0.0.5/s")


@pytest.mark.parametrize("name", ["2gate", "gate 3", "", "-x", "x" * 65, "gate/3"])
def test_a_bad_camera_name_is_refused_in_the_one_place(name: str) -> None:
    with pytest.raises(SourceError, match="a letter, then letters"):
        check_camera_name(name)
    with pytest.raises(InvalidInput, match="a letter, then letters"):
        deps._check_plan(replace(plan(), cameras=(deps.CameraSpec(name, "/x.avi"),)))
    # the watch command's optional NAME= is not taken as a name: the whole text is the target
    assert SourceSpec.parse(f"{name}=/videos/a.mp4").name != name or not name


@pytest.mark.parametrize("text", ["nocolon", "=rtsp://x", "gate=", " = "])
def test_name_equals_source_is_parsed_once(text: str) -> None:
    with pytest.raises(SourceError, match="NAME=SOURCE") as info:
        split_camera(text)
    assert info.value.field == "cameras"
    with pytest.raises(InvalidInput, match="NAME=SOURCE"):
        deps.CameraSpec.parse(text)
    with pytest.raises(RuleError, match=r"cameras, line 2: .*NAME=SOURCE"):
        parse_cameras(f"gate=rtsp://10.0.0.5/s\n{text}")
    assert split_camera("gate = rtsp://u:p@h/s?a=b") == ("gate", "rtsp://u:p@h/s?a=b")


# -- the one threshold range check ------------------------------------------------------------

@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), float("inf"), "0.4x", None, True])
def test_one_threshold_check_for_every_layer(bad: object) -> None:
    with pytest.raises(InvalidInput, match="threshold") as info:
        check_threshold(bad)
    assert info.value.field == "threshold" and "--" not in str(info.value)
    assert check_threshold(-1) == -1.0 and check_threshold("0.42") == 0.42
    if isinstance(bad, float):
        with pytest.raises(InvalidInput, match="a cosine threshold lies between -1 and 1"):
            PipelineConfig(threshold=bad)
        with pytest.raises(InvalidInput, match="a cosine threshold lies between -1 and 1"):
            run_fairness(Path("/nonexistent"), "utkface", threshold=bad, progress=False)
        with pytest.raises(InvalidInput, match="a cosine threshold lies between -1 and 1"):
            deps._check_plan(replace(plan(), threshold=bad))


# -- no threshold means the model's current floor, decided once ----------------------------------

def test_no_threshold_means_the_current_floor(gov: Gov) -> None:
    model = plan().model_id
    with gov.db.reading() as s:
        default = current_floor(s, model).threshold
    first = deps.create(gov.db, gov.actors["op1"], replace(plan(cameras=()), threshold=None))
    assert deps.show(gov.db, gov.actors["op1"], first).threshold == pytest.approx(default)
    record_floor(gov.db, gov.actors["admin"], model, 0.61, {"note": "calibrated"})
    second = deps.create(gov.db, gov.actors["op1"], replace(plan(cameras=()), threshold=None))
    assert deps.show(gov.db, gov.actors["op1"], second).threshold == pytest.approx(0.61)
    with pytest.raises(InvalidInput, match="threshold 7"):
        record_floor(gov.db, gov.actors["admin"], model, 7.0, {})


# -- one redaction --------------------------------------------------------------------------------

def test_messages_are_redacted_by_the_one_redaction() -> None:
    """An error message holding a camera URL (the live run's camera states, the log) hides
    what :func:`openlfr.redact.redact` hides: the userinfo, even with an ``@`` in the
    password, and secret query values."""
    from openlfr.redact import redact, redact_text

    url = "rtsp://admin:p@ss@10.0.0.5:554/live?token=abc&channel=1"
    message = f"OSError: cannot open {url} (refused)"
    shown = redact_text(message)
    assert shown == f"OSError: cannot open {redact(url)} (refused)"
    assert "p@ss" not in shown and "abc" not in shown and "channel=1" in shown
    assert redact_text("/videos/a.mp4: no such file") == "/videos/a.mp4: no such file"
