"""The suite runs away from the user's real home (tests/conftest.py): the program's defaults and
the processes a test starts land in a temporary home, and the guard that watches the real home
sees what a test would leave there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from openlfr.config import default_data_dir
from openlfr.vision import registry
from tests.conftest import (
    HOME_VARIABLES,
    home_changes,
    real_env,
    real_home,
    watched_in_home,
)


def _test_cache() -> Path:
    return Path(os.environ["OPENLFR_TEST_CACHE"])


def test_home_and_settings_point_into_a_temporary_home() -> None:
    home = Path.home()
    assert home != real_home() and Path(os.environ["HOME"]) == home
    assert real_home() not in home.parents
    for variable, relative in HOME_VARIABLES.items():
        assert Path(os.environ[variable]) == home / relative, variable
    assert default_data_dir() == home / ".local" / "share" / "openlfr"
    assert home in registry.cache_dir().parents
    # the one setting the tests pin (tests/conftest.py): the default recogniser, so that a
    # machine with dlib (default fusion) and one without run the same tests
    assert [v for v in os.environ if v.startswith("OPENLFR_")
            and not v.startswith("OPENLFR_TEST_")] == ["OPENLFR_DEFAULT_BACKEND"]
    assert os.environ["OPENLFR_DEFAULT_BACKEND"] == "sface"
    # The photo cache stays where the README says: resolved before HOME was changed.
    assert _test_cache().is_absolute() and home not in _test_cache().parents


def test_a_started_openlfr_keeps_its_default_data_dir_in_the_temporary_home(tmp_path: Path):
    data_dir = default_data_dir()
    # Never run it against a real home: there it would write into the user's own data.
    assert Path.home() != real_home() and Path.home() in data_dir.parents
    before = watched_in_home(real_home(), real_env(), _test_cache())
    password = tmp_path / "chief.pw"
    password.write_text("correct horse battery staple\n")
    script = Path(sys.executable).with_name("openlfr")
    command = ([str(script)] if script.exists()
               else [sys.executable, "-c", "from openlfr.cli import main; main()"])
    try:
        done = subprocess.run([*command, "init", "--admin-user", "chief",
                               "--admin-password-file", str(password)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert (data_dir / "openlfr.db").is_file()
        assert home_changes(before, watched_in_home(real_home(), real_env(),
                                                    _test_cache())) == []
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)  # in the temporary home, for other tests


def test_the_guard_sees_what_a_test_would_leave_in_a_home(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "data"
    allowed = home / ".cache" / "openlfr-test"
    ours = home / ".local" / "share" / "openlfr"
    ours.mkdir(parents=True)
    (home / ".cache" / "other-program").mkdir(parents=True)
    db = ours / "openlfr.db"
    db.write_bytes(b"a user's database")
    env: dict[str, str | None] = {"HOME": str(home)}
    before = watched_in_home(home, env, allowed)

    allowed.mkdir()
    (allowed / "obama.jpg").write_bytes(b"the allowed cache")
    (home / ".cache" / "other-program" / "state").write_bytes(b"not ours, not new")
    assert home_changes(before, watched_in_home(home, env, allowed)) == []

    db.write_bytes(b"a user's database, changed")
    (ours / "master.key").write_bytes(b"new")
    (home / ".config" / "matplotlib").mkdir(parents=True)
    (home / ".pki").mkdir()
    assert home_changes(before, watched_in_home(home, env, allowed)) == [
        f"changed {db}", f"created {home / '.config' / 'matplotlib'}",
        f"created {ours / 'master.key'}", f"created {home / '.pki'}"]

    # A data directory moved with XDG_DATA_HOME is watched where it is.
    (elsewhere / "openlfr").mkdir(parents=True)
    moved = {"HOME": str(home), "XDG_DATA_HOME": str(elsewhere)}
    before = watched_in_home(home, moved, allowed)
    (elsewhere / "openlfr" / "openlfr.db").write_bytes(b"new")
    assert home_changes(before, watched_in_home(home, moved, allowed)) == [
        f"created {elsewhere / 'openlfr' / 'openlfr.db'}"]


def test_ci_runs_the_readmes_test_command_as_written() -> None:
    """The README's second set-up command starts the services itself, and CI runs that line."""
    root = Path(__file__).resolve().parent.parent
    setup = (root / "README.md").read_text().split("## Set-up on a fresh machine")[1]
    commands = re.findall(r"```bash\n(.+?)\n```", setup.split("\n## ")[0], re.S)
    assert len(commands) == 2, commands
    test_command = commands[1]
    assert "\n" not in test_command
    assert test_command.startswith("bash scripts/test-services && ")
    assert "&& python -m pytest" in test_command
    # Lint, types and the layers' import contracts are checked before the tests.
    assert "&& ruff check . && mypy && lint-imports && python -m pytest" in test_command
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
