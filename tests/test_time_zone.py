"""The zone of people (``OPENLFR_TIME_ZONE``): console forms read wall-clock times in it,
pages show times in it with its label, the store keeps UTC; the clocks' changes (a skipped
hour, a repeated hour) are refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from openlfr.cli.context import settings_problem
from openlfr.config import Settings
from openlfr.governance.authz import RuleError
from openlfr.governance.times import form_time, form_value, local_to_utc
from openlfr.web.render import format_clock, format_date, format_span, make_templates

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def test_the_setting_defaults_to_utc_and_refuses_an_unknown_zone(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).zone == ZoneInfo("UTC")
    assert Settings(data_dir=tmp_path, time_zone=" Europe/London ").time_zone == "Europe/London"
    for bad in ("Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "Europe/"):
        with pytest.raises(ValidationError) as info:
            Settings(data_dir=tmp_path, time_zone=bad)
        line = settings_problem(info.value)
        assert line.startswith("OPENLFR_TIME_ZONE=") and "not a known IANA time zone" in line


def test_a_form_time_is_a_wall_clock_time_in_the_zone_stored_in_utc() -> None:
    # summer: BST is UTC+1; winter: GMT is UTC
    assert form_time("2026-07-01T14:05", "planned_start", zone=LONDON) == datetime(
        2026, 7, 1, 13, 5, tzinfo=UTC)
    assert form_time("2026-12-01T14:05", "planned_start", zone=LONDON) == datetime(
        2026, 12, 1, 14, 5, tzinfo=UTC)
    assert form_time("2026-12-01T14:05", "planned_start", zone=NEW_YORK) == datetime(
        2026, 12, 1, 19, 5, tzinfo=UTC)
    # the default stays UTC, and a time written with its zone keeps it
    assert form_time("2026-07-01T14:05", "planned_start") == datetime(
        2026, 7, 1, 14, 5, tzinfo=UTC)
    assert form_time("2026-07-01T14:05Z", "planned_start", zone=LONDON) == datetime(
        2026, 7, 1, 14, 5, tzinfo=UTC)
    # and the input's value is the same wall-clock time again
    assert form_value(datetime(2026, 7, 1, 13, 5, tzinfo=UTC), LONDON) == "2026-07-01T14:05"
    assert form_value(datetime(2026, 12, 1, 19, 5, tzinfo=UTC), NEW_YORK) == "2026-12-01T14:05"
    assert form_value(None, LONDON) == ""


def test_the_skipped_hour_is_refused_naming_the_field() -> None:
    # 29 March 2026: at 01:00 GMT the clocks in London go forward to 02:00 BST
    with pytest.raises(RuleError, match=r"planned_start 2026-03-29 01:30 does not exist in "
                                        r"Europe/London: the clocks go forward") as info:
        form_time("2026-03-29T01:30", "planned_start", zone=LONDON)
    assert info.value.field == "planned_start"
    # the minutes either side exist
    assert form_time("2026-03-29T00:59", "planned_start", zone=LONDON) == datetime(
        2026, 3, 29, 0, 59, tzinfo=UTC)
    assert form_time("2026-03-29T02:00", "planned_start", zone=LONDON) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC)


def test_the_repeated_hour_is_refused_naming_the_field() -> None:
    # 25 October 2026: at 02:00 BST the clocks go back to 01:00 GMT; 01:30 happens twice
    with pytest.raises(RuleError, match=r"planned_end 2026-10-25 01:30 happens twice in "
                                        r"Europe/London: the clocks go back then \(BST and "
                                        r"GMT\)") as info:
        form_time("2026-10-25T01:30", "planned_end", zone=LONDON)
    assert info.value.field == "planned_end"
    assert form_time("2026-10-25T02:00", "planned_end", zone=LONDON) == datetime(
        2026, 10, 25, 2, 0, tzinfo=UTC)
    # in UTC nothing is skipped or repeated
    assert local_to_utc(datetime(2026, 10, 25, 1, 30), UTC, "x") == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC)


def test_the_edges_of_the_calendar_are_a_plain_refusal() -> None:
    with pytest.raises(RuleError, match="planned_start"):
        form_time("0001-01-01T00:30", "planned_start", zone=ZoneInfo("Asia/Tokyo"))
    with pytest.raises(RuleError, match="planned_end"):
        form_time("9999-12-31T23:30", "planned_end", zone=NEW_YORK)


def test_times_are_shown_in_the_zone_and_labelled() -> None:
    summer = datetime(2026, 7, 1, 13, 5, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 14, 5, tzinfo=UTC)
    assert format_date(summer) == "01 Jul 2026 13:05 UTC"
    assert format_date(summer, LONDON) == "01 Jul 2026 14:05 BST (Europe/London)"
    assert format_date(winter, LONDON) == "01 Dec 2026 14:05 GMT (Europe/London)"
    assert format_date(summer, LONDON, seconds=True) == (
        "01 Jul 2026 14:05:00 BST (Europe/London)")
    assert format_date(summer.isoformat(), LONDON) == "01 Jul 2026 14:05 BST (Europe/London)"
    assert format_date(datetime(2026, 7, 1, 23, 30, tzinfo=UTC), LONDON,
                       with_time=False) == "02 Jul 2026"  # the date where people are
    assert format_date(None, LONDON) == "—"
    assert format_clock(summer, NEW_YORK) == "09:05:00 EDT (America/New_York)"
    # a time stored without its zone is UTC
    assert format_date(datetime(2026, 7, 1, 13, 5), LONDON) == (
        "01 Jul 2026 14:05 BST (Europe/London)")


def test_a_span_is_labelled_once_and_each_side_of_a_clock_change() -> None:
    start = datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
    assert format_span(start, datetime(2026, 7, 1, 17, 0, tzinfo=UTC), LONDON) == (
        "01 Jul 2026, 14:00–18:00 BST (Europe/London)")
    # the local day changes at local midnight, not UTC's
    assert format_span(datetime(2026, 7, 1, 22, 0, tzinfo=UTC),
                       datetime(2026, 7, 2, 2, 0, tzinfo=UTC), LONDON) == (
        "01 Jul 2026 23:00 – 02 Jul 2026 03:00 BST (Europe/London)")
    # across the change of 25 October both abbreviations are shown
    assert format_span(datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
                       datetime(2026, 10, 25, 3, 0, tzinfo=UTC), LONDON) == (
        "24 Oct 2026 23:00 BST – 25 Oct 2026 03:00 GMT (Europe/London)")
    assert format_span(start, None, LONDON) == "01 Jul 2026 14:00 BST (Europe/London) – now"
    assert format_span(start, datetime(2026, 7, 1, 17, 0, tzinfo=UTC)) == (
        "01 Jul 2026, 13:00–17:00 UTC")


def test_the_templates_use_the_zone_they_were_made_with() -> None:
    env = make_templates(LONDON).env
    page = env.from_string("{{ t|date }} | {{ span(t, t) }} | {{ clock(t) }} | {{ zone_name }}")
    t = datetime(2026, 7, 1, 13, 5, tzinfo=UTC)
    assert page.render(t=t) == ("01 Jul 2026 14:05 BST (Europe/London) | "
                                "01 Jul 2026, 14:05–14:05 BST (Europe/London) | "
                                "14:05:00 BST (Europe/London) | Europe/London")


def test_no_template_or_route_formats_a_time_itself() -> None:
    """Every time people read goes through render.py's filters: no strftime, no isoformat
    shown, no hand-written "UTC" label in the templates or the console's routes."""
    web = Path(__file__).parents[1] / "src" / "openlfr" / "web"
    for path in sorted((web / "templates").glob("*.html")):
        text = path.read_text()
        assert "strftime" not in text, path.name
        assert " UTC" not in text and "(UTC)" not in text, path.name
    for name in ("console_governance.py", "console_alerts.py", "console.py", "public.py"):
        text = (web / "routes" / name).read_text()
        assert "strftime" not in text and '" UTC"' not in text and " UTC\"" not in text, name


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]))
def test_what_a_form_shows_it_reads_back(when: datetime, name: str) -> None:
    """The value put in a form's field reads back as the same minute, in any zone; only a
    minute the clocks repeat is refused, naming the field."""
    zone = ZoneInfo(name)
    minute = when.replace(second=0, microsecond=0)
    try:
        back = form_time(form_value(minute, zone), "planned_end", zone=zone)
    except RuleError as exc:
        assert "happens twice" in str(exc) and exc.field == "planned_end"
        local = minute.astimezone(zone)
        assert local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()
        return
    assert back == minute
