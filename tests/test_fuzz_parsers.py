"""Properties of every parser of user input (hypothesis): times, camera lines, pairs files,
group specs. The watchlist file has its own: tests/test_fuzz_watchlist_file.py.

For each parser: on any input it returns a sound value or raises the error it documents (never
anything else); what it writes it reads back the same; its bounds hold. Runs under the
``ci`` hypothesis profile of tests/conftest.py (derandomised, no deadline); ``--hypothesis-profile
long`` draws many more examples.
"""

from __future__ import annotations

import csv
import io
import string
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from openlfr.cli.calibrate import parse_rate
from openlfr.cli.deployments import parse_when
from openlfr.errors import InvalidInput
from openlfr.evaluation.groups import (
    AGE_BANDS,
    UTK_GENDER,
    UTK_RACE,
    Dataset,
    load_groups,
    parse_utkface_name,
)
from openlfr.evaluation.identify import parse_sizes
from openlfr.evaluation.pairs import (
    CSV_FOLDS,
    Pair,
    PairsError,
    assign_folds,
    lfw_image_path,
    parse_decision,
    read_pairs,
)
from openlfr.governance.authz import RuleError
from openlfr.governance.deployments import CameraSpec
from openlfr.governance.watchlists import parse_expiry
from openlfr.video.sources import CAMERA_NAME, STREAM_SCHEMES, SourceError, SourceSpec
from openlfr.web.routes.console_governance import _when, parse_cameras

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# -- strategies ----------------------------------------------------------------------------

#: Text as people type it, and as attackers do: any Unicode, with the characters the parsers
#: split on made likely.
text = st.text(st.one_of(st.characters(), st.sampled_from("=,\t\n\r :+-./@?#0123456789dhwTZ")),
               max_size=80)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(timezones=offsets)
#: Aware times that stay within datetime's range once converted to UTC.
safe_aware = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                          timezones=offsets)
camera_names = st.from_regex(CAMERA_NAME, fullmatch=True)
#: A source as written on a camera line: no surrounding blanks, no line break (and no lone
#: surrogate: text from a form or a command line is valid Unicode).
sources = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), min_size=1,
                  max_size=60).map(str.strip).filter(bool)


# -- times ---------------------------------------------------------------------------------

@given(text)
@example("9" * 5000 + "d")  # more digits than Python turns into an int
@example("+" + "9" * 5000 + "d")
@example("99999999999w")
def test_parse_expiry_any_text(value: str) -> None:
    """An aware time, or a RuleError (a ValueError the CLI and web show as it is)."""
    try:
        when = parse_expiry(value, NOW)
    except RuleError as exc:
        assert repr(value) in str(exc) or value.strip() == "" or len(value) > 60
        return
    assert when.tzinfo is not None


@given(st.integers(0, 10**6), st.sampled_from("hdwHDW"), st.sampled_from(["", " "]))
def test_parse_expiry_durations(n: int, unit: str, blank: str) -> None:
    step = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
    try:
        expected = NOW + n * step[unit.lower()]
    except OverflowError:
        with pytest.raises(RuleError, match="too far in the future"):
            parse_expiry(f"{n}{blank}{unit}", NOW)
        return
    assert parse_expiry(f"{blank}{n}{blank}{unit}{blank}", NOW) == expected


@given(aware)
def test_parse_expiry_round_trips_iso(when: datetime) -> None:
    assert parse_expiry(when.isoformat(), NOW) == when


@given(st.dates(max_value=date(9999, 12, 30)))
def test_parse_expiry_date_is_the_end_of_that_day(day: date) -> None:
    when = parse_expiry(day.isoformat(), NOW)
    assert when == datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


@given(aware)
@example(datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))))
@example(datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))))
def test_parse_expiry_results_convert_to_utc(when: datetime) -> None:
    """What parse_expiry accepts, the services can convert to UTC (or it is refused)."""
    try:
        parsed = parse_expiry(when.isoformat(), NOW)
    except RuleError:
        return
    parsed.astimezone(UTC)


def _parse_when(value: str) -> datetime | None:
    """parse_when's answer, or None when it refused (a one-line error, exit code 2)."""
    try:
        return parse_when(value, "--start", NOW)
    except typer.Exit as exc:
        assert exc.exit_code == 2
        return None


@given(text)
@example("+" + "9" * 400 + "d")
@example("+1e400d")
@example("+9" * 3)
def test_parse_when_any_text(value: str) -> None:
    when = _parse_when(value)
    assert when is None or when.tzinfo is not None


@given(safe_aware)
def test_parse_when_round_trips_iso(when: datetime) -> None:
    assert _parse_when(when.isoformat()) == when
    if when.utcoffset() == timedelta(0):
        assert _parse_when(when.replace(tzinfo=None).isoformat() + "Z") == when


@given(st.integers(0, 10**5), st.sampled_from("smhd"))
def test_parse_when_relative(n: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert _parse_when(f"+{n}{unit}") == NOW + timedelta(seconds=n * seconds)


@given(text)
@example("+" + "9" * 5000 + "d")
@example("+99999999999d")
def test_console_when_any_text(value: str) -> None:
    """The console's deployment form: an aware time or a RuleError shown on the form."""
    try:
        when = _when(value, "planned_start")
    except RuleError as exc:
        assert "planned_start" in str(exc)
        return
    assert when.tzinfo is not None


@given(safe_aware)
def test_console_when_round_trips(when: datetime) -> None:
    assert _when(when.isoformat(), "planned_start") == when
    naive = when.astimezone(UTC).replace(tzinfo=None)  # the browser's field: UTC, no zone
    assert _when(naive.isoformat(timespec="minutes"), "planned_start") == \
        naive.replace(second=0, microsecond=0, tzinfo=UTC)


@given(aware)
@example(datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))))
@example(datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))))
def test_parsed_times_convert_to_utc(when: datetime) -> None:
    """What the command line and the console accept, the database can store (in UTC)."""
    try:
        console = _when(when.isoformat(), "planned_start")
    except RuleError as exc:  # refused on the form, naming the field
        assert "planned_start" in str(exc)
        console = None
    for parsed in (_parse_when(when.isoformat()), console):
        if parsed is not None:
            parsed.astimezone(UTC)


# -- camera lines --------------------------------------------------------------------------

@given(text)
def test_camera_spec_any_text(value: str) -> None:
    try:
        spec = CameraSpec.parse(value)
    except SourceError as exc:  # an InvalidInput naming the form NAME=SOURCE
        assert "NAME=SOURCE" in str(exc)
        return
    assert spec.name and spec.name == spec.name.strip() and "=" not in spec.name
    assert spec.source and spec.source == spec.source.strip()


@given(camera_names, sources, st.sampled_from(["", " ", "\t"]))
def test_camera_spec_round_trip(name: str, source: str, blank: str) -> None:
    spec = CameraSpec.parse(f"{blank}{name}{blank}={blank}{source}{blank}")
    assert spec == CameraSpec(name, source)
    assert CameraSpec.parse(f"{spec.name}={spec.source}") == spec


@given(st.lists(st.tuples(camera_names, sources), max_size=5), st.sampled_from(["\n", "\r\n"]))
def test_console_camera_lines_round_trip(cameras: list[tuple[str, str]], newline: str) -> None:
    lines = newline.join(f"{n}={s}" for n, s in cameras)
    parsed = parse_cameras(lines + newline + newline)  # blank lines are skipped
    assert [(c.name, c.source) for c in parsed] == cameras


@given(text)
def test_console_camera_lines_any_text(value: str) -> None:
    """A list of cameras, or an error the form shows: RuleError, or the field limits of the
    API model (a pydantic ValidationError)."""
    try:
        parse_cameras(value)
    except RuleError as exc:
        assert "NAME=SOURCE" in str(exc)
    except ValidationError:
        pass


@given(text)
@example("¹")  # a digit to str.isdigit(), not to int()
@example("9" * 5000)
def test_source_spec_any_text(value: str) -> None:
    try:
        spec = SourceSpec.parse(value)
    except SourceError as exc:
        assert str(exc)
        return
    assert spec.name and spec.target == spec.target.strip() and spec.target
    assert spec.kind in ("file", "stream", "device")
    if spec.kind == "device" and spec.target.isdigit():
        assert spec.device == int(spec.target)


@given(camera_names, st.sampled_from(STREAM_SCHEMES),
       st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
       st.from_regex(r"(/[\w.-]{0,12}){0,3}", fullmatch=True))
def test_source_spec_named_stream_round_trip(name: str, scheme: str, host: str,
                                             path: str) -> None:
    url = f"{scheme}://{host}{path}"
    spec = SourceSpec.parse(f"{name}={url}")
    assert (spec.name, spec.target, spec.kind) == (name, url, "stream")
    assert SourceSpec.parse(f"{spec.name}={spec.target}") == spec


@given(st.sampled_from(STREAM_SCHEMES), st.text(string.ascii_letters + string.digits + "._~",
                                               min_size=1, max_size=10),
       st.text(string.ascii_letters + string.digits + "!$&'()*+,;=:._~@", min_size=1,
               max_size=16),
       st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True))
def test_source_spec_stream_name_never_shows_credentials(scheme: str, user: str, secret: str,
                                                         host: str) -> None:
    """An unnamed stream is named after its host, never after the user or password in it."""
    assume(secret not in host and user not in host)
    spec = SourceSpec.parse(f"{scheme}://{user}:{secret}@{host}/live")
    assert spec.kind == "stream" and spec.name == host


@given(st.integers(0, 10**7))
def test_source_spec_device_round_trip(index: int) -> None:
    """A webcam index has at most six digits; a longer number is a file name."""
    spec = SourceSpec.parse(str(index))
    if index < 10**6:
        assert (spec.kind, spec.device, spec.name) == ("device", index, f"webcam{index}")
    else:
        assert (spec.kind, spec.target) == ("file", str(index))


# -- pairs files ---------------------------------------------------------------------------

identity = st.from_regex(r"[A-Za-z][A-Za-z_'-]{0,15}", fullmatch=True)
rel_path = st.from_regex(r"[A-Za-z0-9_]{1,8}(/[A-Za-z0-9_ .-]{0,8}[A-Za-z0-9_]){0,2}\.jpg",
                         fullmatch=True)


def _read(tmp_path: Path, content: str | bytes) -> list[Pair]:
    path = tmp_path / "pairs.txt"
    path.write_bytes(_bytes(content))
    return read_pairs(path)


def _bytes(content: str | bytes) -> bytes:
    """Text as UTF-8; a lone surrogate as the invalid bytes it stands for (a file may hold
    anything)."""
    return content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content


@given(st.one_of(text, st.binary(max_size=200),
                 st.lists(st.sampled_from(["10\t300", "1\t2", "3", "file_x,file_y,decision",
                                           "a.jpg,b.jpg,yes", "Abel\t1\t2", "A\t1\tB\t2", "",
                                           "a,b", "x\t0\t1", '"a', "\0"]),
                          max_size=8).map("\n".join)))
@example("file_x,file_y,decision\n" + "a" * 200_000 + ",b.jpg,yes\n")  # over csv's field limit
@example("9" * 5000 + "\n")  # a header with more digits than Python turns into an int
@example("file_x,file_y,decision\na.jpg,b\0.jpg,yes\n")
def test_read_pairs_any_content(tmp_path_factory: pytest.TempPathFactory,
                                content: str | bytes) -> None:
    tmp_path = tmp_path_factory.mktemp("pairs")
    try:
        pairs = _read(tmp_path, content)
    except PairsError as exc:
        assert str(exc).startswith(f"pairs file {tmp_path / 'pairs.txt'}")
        return
    assert pairs
    for p in pairs:
        assert p.left and p.right and p.fold >= 1 and p.line >= 1
        for rel in (p.left, p.right):
            assert not Path(rel).is_absolute() and ".." not in Path(rel).parts


@given(st.integers(1, 4), st.lists(st.tuples(identity, st.integers(1, 9999), st.integers(1, 9999),
                                               identity, st.integers(1, 9999)),
                                     min_size=1, max_size=6))
def test_lfw_pairs_round_trip(tmp_path_factory: pytest.TempPathFactory, folds: int,
                              rows: list[tuple[str, int, int, str, int]]) -> None:
    per_fold = len(rows)
    lines = [f"{folds}\t{per_fold}"]
    expected = []
    for fold in range(1, folds + 1):
        for name, i, j, _, _ in rows:
            lines.append(f"{name}\t{i}\t{j}")
            expected.append((lfw_image_path(name, i), lfw_image_path(name, j), True, fold))
        for name, i, _, other, k in rows:
            lines.append(f"{name}\t{i}\t{other}\t{k}")
            expected.append((lfw_image_path(name, i), lfw_image_path(other, k), False, fold))
    pairs = _read(tmp_path_factory.mktemp("lfw"), "\n".join(lines) + "\n")
    got = [(p.left, p.right, p.same, p.fold) for p in pairs]
    if folds > 1:
        assert got == expected
    else:  # one fold is dealt into folds as a CSV is
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        assert {p.fold for p in pairs} <= set(range(1, CSV_FOLDS + 1))


@given(st.lists(st.tuples(rel_path, rel_path, st.booleans()), min_size=1, max_size=30),
       st.sampled_from([("yes", "no"), ("TRUE", "False"), ("1", "0"), ("same", "different")]))
def test_csv_pairs_round_trip(tmp_path_factory: pytest.TempPathFactory,
                              rows: list[tuple[str, str, bool]],
                              words: tuple[str, str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["decision", "file_x", "file_y", "note"])
    for left, right, same in rows:
        writer.writerow([words[0] if same else words[1], left, right, "a, quoted note"])
    pairs = _read(tmp_path_factory.mktemp("csv"), out.getvalue())
    assert [(p.left, p.right, p.same) for p in pairs] == rows
    folds = [p.fold for p in pairs]
    k = min(CSV_FOLDS, len(rows))
    assert set(folds) == set(range(1, k + 1))
    sizes = [folds.count(f) for f in range(1, k + 1)]
    assert max(sizes) - min(sizes) <= 1


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_assign_folds_bounds(labels: list[bool], n_folds: int, seed: int) -> None:
    folds = assign_folds(labels, n_folds, seed)
    assert folds == assign_folds(labels, n_folds, seed)  # deterministic
    assert len(folds) == len(labels)
    k = max(1, min(n_folds, len(labels)))
    assert all(1 <= f <= k for f in folds)
    if labels:
        sizes = [folds.count(f) for f in range(1, k + 1)]
        assert max(sizes) - min(sizes) <= 1


@given(text)
def test_parse_decision(value: str) -> None:
    try:
        same = parse_decision(value)
    except ValueError as exc:
        assert "decision must be" in str(exc)
        return
    assert parse_decision(value.upper()) == same == parse_decision(f" {value} ")


# -- numbers on the command line ----------------------------------------------------------

@given(st.one_of(text, st.fractions().map(str), st.floats().map(str)))
@example("1e1000")  # overflowed float(): a traceback
@example("1e-10000000")  # Fraction built a ten-million-digit denominator: 47 s
@example("1/" + "9" * 5000)
@example("nan")
def test_parse_rate_any_text(value: str) -> None:
    try:
        rate = parse_rate(value)
    except InvalidInput as exc:
        assert str(exc).startswith("--target-fpir")
        return
    assert 0.0 < rate < 1.0


def test_parse_rate_is_quick_on_huge_exponents() -> None:
    """Regression: ``--target-fpir 1e-10000000`` took 47 s before it was refused."""
    start = time.monotonic()
    with pytest.raises(InvalidInput, match="strictly between 0 and 1"):
        parse_rate("1e-10000000")
    assert time.monotonic() - start < 5


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_parse_rate_round_trips_fractions(a: int, b: int) -> None:
    low, high = sorted((a, b))
    if low == high:
        return
    assert parse_rate(f"{low}/{high}") == low / high
    assert parse_rate(repr(low / high)) == low / high


@given(text)
@example("²")  # a digit to str.isdigit(), not to int()
@example("9" * 5000)
def test_parse_sizes_any_text(value: str) -> None:
    try:
        sizes = parse_sizes(value)
    except InvalidInput as exc:
        assert str(exc).startswith("--gallery-sizes")
        return
    assert sizes and sizes == sorted(set(sizes)) and all(s >= 1 for s in sizes)


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=6))
def test_parse_sizes_round_trip(sizes: list[int]) -> None:
    assert parse_sizes(", ".join(f"{s:_}" for s in sizes)) == sorted(set(sizes))


# -- group specs ---------------------------------------------------------------------------

@given(text)
@example("1" * 5000 + "_0_0_x.jpg")  # int() refuses 5,000 digits
@example("²_0_0_x.jpg")  # a digit to str.isdigit(), not to int()
def test_parse_utkface_name_any_text(name: str) -> None:
    parsed = parse_utkface_name(name)
    if parsed is not None:
        assert parsed["gender"] in UTK_GENDER.values()
        assert parsed["race"] in UTK_RACE.values()
        assert parsed["age"] in {label for _, label in AGE_BANDS}


@given(st.integers(0, 130), st.sampled_from(sorted(UTK_GENDER)), st.sampled_from(sorted(UTK_RACE)),
       st.integers(0, 10**17))
def test_parse_utkface_name_round_trip(age: int, gender: str, race: str, stamp: int) -> None:
    parsed = parse_utkface_name(f"faces/{age}_{gender}_{race}_{stamp}.jpg.chip.jpg")
    band = [label for low, label in AGE_BANDS if age >= low][-1]
    assert parsed == {"age": band, "gender": UTK_GENDER[gender], "race": UTK_RACE[race]}


DATASET = Dataset(Path("."), ["ann/1.jpg", "ann/2.jpg", "bob/1.jpg"], ["ann", "ann", "bob"],
                  True)
FLAT = Dataset(Path("."), ["1_0_0_1.jpg", "2.jpg"], ["1_0_0_1.jpg", "2.jpg"], False)


@given(st.one_of(text, st.binary(max_size=300),
                 st.lists(st.sampled_from(["identity,gender", "file,race,age", "ann,f", "bob,m",
                                           "ann/1.jpg,x,y", "identity", ",", "\0", '"x',
                                           "identity,a,a", "2.jpg,x,1"]),
                          max_size=6).map("\n".join)),
       st.sampled_from([DATASET, FLAT]), st.sampled_from([None, ["gender"], ["nope"]]))
@example("identity,gender\n" + "a" * 200_000 + ",f\n", DATASET, None)  # over csv's field limit
def test_load_groups_any_csv(tmp_path_factory: pytest.TempPathFactory, content: str | bytes,
                             dataset: Dataset, attributes: list[str] | None) -> None:
    path = tmp_path_factory.mktemp("groups") / "groups.csv"
    path.write_bytes(_bytes(content))
    try:
        groups = load_groups(str(path), dataset, attributes)
    except InvalidInput as exc:
        assert str(path) in str(exc) or "unknown attribute" in str(exc)
        return
    assert groups.attributes and set(groups.labels) == set(groups.attributes)
    for labels in groups.labels.values():
        assert len(labels) == len(dataset.images)
    assert 0 <= groups.skipped <= len(dataset.images)


@given(st.dictionaries(st.sampled_from(["ann", "bob"]),
                       st.tuples(st.text(st.characters(blacklist_categories=("Cs", "Cc")),
                                         max_size=10).map(str.strip),
                                 st.sampled_from(["18-29", "60+", ""])),
                       min_size=1))
def test_load_groups_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                table: dict[str, tuple[str, str]]) -> None:
    path = tmp_path_factory.mktemp("groups") / "groups.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["identity", "gender", "age"])
        for name, row in table.items():
            writer.writerow([name, *row])
    assume(any(v.strip() for v in (path.read_text(encoding="utf-8").splitlines()[1:])))
    groups = load_groups(str(path), DATASET)
    assert groups.attributes == ["gender", "age"]
    for a, j in (("gender", 0), ("age", 1)):
        expected = [(table[i][j] or None) if i in table else None for i in DATASET.identities]
        assert groups.labels[a] == expected
    assert groups.skipped == sum(i not in table for i in DATASET.identities)
