"""A recogniser the user brings, end to end on SQLite and PostgreSQL: ``openlfr models add``
(hashed, copied owner-only, recorded, audited), refused for deployments until ``openlfr
calibrate`` has recorded its floor and fairness report, then accepted; the report shown with
the model; a changed file refused; bad input as one-line errors. And creating a deployment
loads no face model."""

from __future__ import annotations

import json
import re
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from openlfr.audit import log as audit_log
from openlfr.cli import app
from openlfr.governance import deployments as deps
from openlfr.governance import models, watchlists
from openlfr.governance.authz import RuleError
from openlfr.governance.floors import current_floor, record_floor
from openlfr.store.models import UserModel
from openlfr.vision import engine as engine_module
from openlfr.vision import load_image, registry
from tests.govfix import Gov

runner = CliRunner()

ADD = ["--name", "outside", "--input-size", "112x112", "--mean", "0", "--std", "1,1,1",
       "--colour", "rgb", "--user", "admin"]


@pytest.fixture()
def outside_file(tmp_path: Path) -> Path:
    """SFace's pinned file, under another name, as if it came from elsewhere."""
    path = tmp_path / "downloads" / "my-recogniser.onnx"
    path.parent.mkdir()
    shutil.copy(registry.resolve("sface"), path)
    return path


def cli(gov: Gov, *args: str) -> object:
    return runner.invoke(app, list(args), env=gov.env())


def plan(model_id: str, threshold: float) -> deps.Plan:
    now = datetime.now(UTC)
    return deps.Plan(
        alternatives="Patrols do not suffice",
        name="Station concourse", site="Central station", location="North concourse, gate 3",
        purpose="Locate people wanted by the courts", legal_basis="Common law policing powers",
        dpia_ref="DPIA-2026-014", equality_ref="EIA-2026-009",
        planned_start=now + timedelta(hours=1), planned_end=now + timedelta(hours=3),
        threshold=threshold, model_id=model_id, two_person_rule=True, signage=True,
        public_notice=True, notice_at=now - timedelta(days=1))


def test_added_model_is_unusable_until_calibrated(gov: Gov, outside_file: Path,
                                                  people_dir: Path, groups_csv: Path,
                                                  face_images: dict[str, Path]) -> None:
    added = cli(gov, "models", "add", str(outside_file), *ADD, "--json")
    assert added.exit_code == 0, added.output
    info = json.loads(added.stdout)
    digest = registry.sha256_file(outside_file)
    assert info["sha256"] == digest and info["state"] == "needs calibration"
    assert info["model_id"] == f"user-outside-{digest[:12]}" and info["usable"] is False
    assert info["config"]["dim"] == 128 and info["config"]["output_name"] == "fc1"
    # Copied into the data directory, owner-only, by digest.
    stored = gov.data_dir / "models" / f"{digest}.onnx"
    assert stored.read_bytes() == outside_file.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    with gov.db.reading() as s:
        entries = [e for e in audit_log.entries(s) if e.action == "model.add"]
        assert audit_log.verify(s).ok
    assert entries[0].actor == "admin" and entries[0].details["sha256"] == digest
    model_id = info["model_id"]

    listed = json.loads(cli(gov, "models", "list", "--json").stdout)
    rec = {r["name"]: r for r in listed["recognisers"]}
    assert set(rec) == {"sface", "dlib", "fusion", "outside"}
    assert rec["outside"]["state"] == "needs calibration" and rec["outside"]["file_ok"] is True
    assert rec["sface"]["floor"] == registry.BACKENDS["sface"].default_floor

    # Refused for a deployment, through the service and the command line.
    with pytest.raises(RuleError, match=r"no threshold floor yet.*openlfr calibrate"):
        deps.create(gov.db, gov.actors["op1"], plan(model_id, 0.5))
    refused = cli(gov, "deployment", "create", "--alternatives",
                  "Patrols do not suffice", "--user", "op1", "--name", "Concourse",
                  "--start", "2030-01-01T08:00+00:00", "--end", "2030-01-01T10:00+00:00",
                  "--backend", "outside", "--threshold", "0.5")
    assert refused.exit_code == 2 and "no threshold floor yet" in refused.output
    assert "Traceback" not in refused.output

    # Calibrated on the user's evaluation data: floor and fairness report recorded.
    cal = cli(gov, "calibrate", "-d", str(people_dir), "-g", str(groups_csv), "--backend",
              "outside", "--watchlist-size", "2", "--target-fpir", "1/5", "--json",
              "--no-progress", "--user", "ao1")
    assert cal.exit_code == 0, cal.output
    out = json.loads(cal.stdout)
    assert out["model_id"] == model_id and out["evidence"]["default_threshold"] is None
    with gov.db.reading() as s:
        floor = current_floor(s, model_id)
        row = s.scalars(select(UserModel).where(UserModel.name == "outside")).one()
        assert row.floor_id is not None
    # the floor enforced is the one that holds for the worst-measured group too
    enforced = max(out["threshold"], float(out["evidence"]["worst_group"]["floor"]))
    assert floor.source == "calibrated" and floor.threshold == enforced

    shown = cli(gov, "models", "show", "outside", "--json")
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.stdout)
    assert view["state"] == "calibrated" and view["usable"] and view["file_ok"] is True
    assert view["floor"] == enforced
    report = view["report"]["fairness"]["attributes"]
    assert set(report) == {"gender", "tone"}
    assert report["gender"]["groups"]["M"]["impostor_pairs"] == 12
    text = cli(gov, "models", "show", "outside")
    assert "fairness report" in text.stdout and "tone" in text.stdout

    # Now accepted, with the calibrated floor as its default threshold.
    made = cli(gov, "deployment", "create", "--alternatives",
               "Patrols do not suffice", "--user", "op1", "--name", "Concourse",
               "--start", "2030-01-01T08:00+00:00", "--end", "2030-01-01T10:00+00:00",
               "--backend", "outside", "--json")
    assert made.exit_code == 0, made.output
    dep = json.loads(made.stdout)
    assert dep["model_id"] == model_id and dep["threshold"] == enforced

    # Its watchlists hold its templates, made by the added file.
    wl = watchlists.create_watchlist(gov.system, gov.actors["op1"], "wanted",
                                     "Locate people wanted by the courts at the station",
                                     backend="outside")
    assert wl.model_id == model_id
    image = face_images["obama"]
    watchlists.add_subject(gov.system, gov.actors["op1"], wl.id, "Case 1", "wanted_by_court",
                           "Wanted on a warrant issued by the magistrates' court (case 1).",
                           datetime.now(UTC) + timedelta(days=30),
                           [(image.read_bytes(), f"custody record ({image.name})")])
    watchlists.approve_watchlist(gov.db, gov.actors["ao2"], wl.id)
    with gov.db.reading() as s:
        gallery, _names = watchlists.deployment_gallery(s, gov.system.keyring, [wl.id])
    assert gallery.model_id == model_id and len(gallery) == 1
    engine = models.engine_for(gov.db, model_id, gov.data_dir)
    probe = load_image(face_images["obama2"])
    template = engine.embed(probe, engine.detect(probe)[:1])[0]
    best = gallery.search(template.vector[None, :], k=1)[0][0]
    assert best.score > 0.5  # the same person, by the added model
    # In use: it cannot be removed.
    gone = cli(gov, "models", "remove", "outside", "--user", "admin")
    assert gone.exit_code == 2 and "used by deployment" in gone.output


def test_bad_input_is_one_line(gov: Gov, outside_file: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("these are not weights")
    cases = [
        ([str(text), "--name", "notes", *ADD[2:]], "not an ONNX model"),
        ([str(tmp_path / "none.onnx"), "--name", "none", *ADD[2:]], "no such file"),
        ([str(outside_file), "--name", "small", "--input-size", "96x96", *ADD[4:]],
         "takes width 112, not the 96 given"),
        ([str(outside_file), "--name", "Bad Name", *ADD[2:]], "model name 'Bad Name'"),
        ([str(outside_file), "--name", "sface", *ADD[2:]], "the name of a built-in backend"),
        ([str(outside_file), "--name", "x2", "--input-size", "wide", *ADD[4:]],
         "--input-size 'wide'"),
        ([str(outside_file), "--name", "x3", "--input-size", "112", "--mean", "a,b",
          *ADD[6:]], "--mean"),
        ([str(outside_file), "--name", "x4", *ADD[2:8], "--colour", "cmyk", *ADD[10:]],
         "colour order 'cmyk'"),
        ([str(outside_file), *ADD], "a model named 'outside' already exists"),
        ([str(outside_file), *ADD[:1], "again", *ADD[2:]], "already added, as model 'outside'"),
    ]
    added = False
    for args, message in cases:
        if not added and "already" in message:
            assert cli(gov, "models", "add", str(outside_file), *ADD).exit_code == 0
            added = True
        result = cli(gov, "models", "add", *args)
        assert result.exit_code == 2, (args, result.output)
        line = " ".join(result.output.split())
        assert message in line, (message, result.output)
        assert "Traceback" not in result.output
    refused = cli(gov, "models", "add", str(outside_file), *ADD[:-1], "op1")
    assert refused.exit_code == 3
    with gov.db.reading() as s:
        assert s.scalars(select(UserModel.name)).all() == ["outside"]
    assert len(list((gov.data_dir / "models").iterdir())) == 1


def test_a_changed_file_is_an_integrity_failure(gov: Gov, outside_file: Path, people_dir: Path,
                                               groups_csv: Path) -> None:
    info = json.loads(cli(gov, "models", "add", str(outside_file), *ADD, "--json").stdout)
    dry = cli(gov, "calibrate", "-d", str(people_dir), "-g", str(groups_csv), "--backend",
              "outside", "--watchlist-size", "2", "--target-fpir", "1/5", "--no-progress",
              "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["model_id"] == info["model_id"]
    assert models.get_model(gov.db, "outside").state == models.NEEDS_CALIBRATION
    stored = gov.data_dir / "models" / f"{info['sha256']}.onnx"
    data = bytearray(stored.read_bytes())
    data[4096] ^= 0x01
    stored.write_bytes(bytes(data))
    shown = json.loads(cli(gov, "models", "show", "outside", "--json").stdout)
    assert shown["file_ok"] is False and "integrity failure" in shown["file_problem"]
    engine_module.clear_engines()  # the file is checked when the model is loaded
    cal = cli(gov, "calibrate", "-d", str(people_dir), "-g", str(groups_csv), "--backend",
              "outside", "--watchlist-size", "2", "--target-fpir", "1/5", "--no-progress",
              "--user", "ao1")
    assert cal.exit_code == 7, cal.output  # an integrity failure, not the user's mistake
    assert "integrity failure" in " ".join(cal.output.split())
    assert "Traceback" not in cal.output
    with gov.db.reading() as s:
        assert s.scalars(select(UserModel.floor_id)).one() is None


def test_remove_an_unused_model(gov: Gov, outside_file: Path) -> None:
    info = json.loads(cli(gov, "models", "add", str(outside_file), *ADD, "--json").stdout)
    model_id = info["model_id"]
    # Only a calibration with its fairness results makes it usable.
    with pytest.raises(RuleError, match="must come from `openlfr calibrate`"):
        record_floor(gov.db, gov.actors["ao1"], model_id, 0.5, {"note": "chosen by hand"})
    assert models.get_model(gov.db, "outside").state == models.NEEDS_CALIBRATION
    record_floor(gov.db, gov.actors["ao1"], model_id, 0.5,
                 {"kind": models.CALIBRATION_KIND, "fairness": {"attributes": {}}})
    assert models.get_model(gov.db, "outside").state == models.CALIBRATED
    assert cli(gov, "models", "remove", "outside", "--user", "op1").exit_code == 3
    done = cli(gov, "models", "remove", "outside", "--user", "admin")
    assert done.exit_code == 0, done.output
    assert not (gov.data_dir / "models" / f"{info['sha256']}.onnx").exists()
    assert cli(gov, "models", "show", "outside").exit_code == 5  # not found
    builtin = cli(gov, "models", "remove", "sface", "--user", "admin")
    assert builtin.exit_code == 2 and "built-in" in builtin.output
    with gov.db.reading() as s:
        acts = [e.action for e in audit_log.entries(s) if e.action.startswith("model.")]
    assert acts == ["model.add", "model.remove"]
    # The same file under the same name again: a new record, not calibrated, whatever floors
    # the earlier record had.
    again = json.loads(cli(gov, "models", "add", str(outside_file), *ADD, "--json").stdout)
    assert again["model_id"] == model_id and again["state"] == "needs calibration"
    with pytest.raises(RuleError, match="no threshold floor yet"):
        deps.create(gov.db, gov.actors["op1"], plan(model_id, 0.6))


def test_creating_a_deployment_loads_no_face_model(gov: Gov) -> None:
    """The model id, the default threshold and the check of the model come from the spec."""
    engine_module.clear_engines()
    made = cli(gov, "deployment", "create", "--alternatives",
               "Patrols do not suffice", "--user", "op1", "--name", "Concourse",
               "--start", "2030-01-01T08:00+00:00", "--end", "2030-01-01T10:00+00:00",
               "--backend", "dlib", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["model_id"] == registry.BACKENDS["dlib"].model_id
    deps.create(gov.db, gov.actors["op1"],
                plan(models.model_id_for(gov.db, "fusion"), 0.75))
    with pytest.raises(RuleError, match="unknown model"):
        deps.create(gov.db, gov.actors["op1"], plan("arcface-r100", 0.5))
    assert engine_module.loaded_engines() == 0


def test_floors_come_from_the_specs(gov: Gov) -> None:
    with gov.db.reading() as s:
        for spec in registry.BACKENDS.values():
            floor = current_floor(s, spec.model_id)
            assert (floor.threshold, floor.source) == (spec.default_floor, "default")


def test_the_console_lists_recognisers_from_the_registry(gov: Gov, outside_file: Path) -> None:
    """The deployment form offers every backend of the registry and the added model, the
    latter disabled until calibrated; the API refuses it with a plain message."""
    from fastapi.testclient import TestClient

    from openlfr.web.app import create_app
    from tests.govfix import PASSWORD

    info = models.add_model(gov.db, gov.actors["admin"], gov.data_dir, outside_file, "outside",
                            width=112, height=112, mean=[0], std=[1])
    with TestClient(create_app(gov.system), base_url="http://testserver") as op1:
        assert op1.post("/api/v1/auth/login",
                        json={"name": "op1", "password": PASSWORD}).status_code == 200
        form = op1.get("/console/deployments/new").text
        for name in registry.BACKENDS:
            assert f'<option value="{name}"' in form
        assert '<option value="outside" disabled>' in form and "needs calibration" in form
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', form)
        assert csrf is not None
        now = datetime.now(UTC)
        r = op1.post("/api/v1/deployments", headers={"X-CSRF-Token": csrf.group(1)}, json={
            "name": "Concourse", "site": "Central station", "location": "Gate 3",
            "purpose": "Locate people wanted by the courts",
            "alternatives": "Patrols do not suffice", "legal_basis": "Common law",
            "dpia_ref": "DPIA-1", "equality_ref": "EIA-1",
            "planned_start": (now + timedelta(hours=1)).isoformat(),
            "planned_end": (now + timedelta(hours=2)).isoformat(), "backend": "outside"})
        assert r.status_code == 400 and "no threshold floor yet" in r.json()["detail"]
        record_floor(gov.db, gov.actors["ao1"], info.model_id, 0.52,
                     {"kind": models.CALIBRATION_KIND, "fairness": {"attributes": {}}})
        form = op1.get("/console/deployments/new").text
        assert '<option value="outside">' in form and "floor 0.52, calibrated" in form
