"""Recognisers: the built-in ones (:mod:`openlfr.vision.registry`) and the ones users add.

``openlfr models add FILE`` checks that the file is an ONNX face recogniser of the stated input
size (:func:`openlfr.vision.embed_onnx.inspect_model`), hashes it (SHA-256), copies it into the
data directory (``models/<sha256>.onnx``, owner-only) and records it (table ``user_models``,
audited ``model.add``). A model added this way has no threshold and no floor: no deployment
can use it until ``openlfr calibrate`` has recorded its floor, whose evidence is its fairness
report on the user's own evaluation data (:func:`attach_floor`, called by
:func:`openlfr.governance.floors.record_floor` in the same transaction). A file whose SHA-256
no longer matches the record is refused when it is loaded.

Nothing here loads a model to answer a question about one: names, model ids, floors and states
come from the specs and the records. Only :func:`add_model` runs the graph (once, to check it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.audit import log as audit_log
from openlfr.governance.authz import Actor, NotFound, Perm, RuleError, require
from openlfr.store.db import Database
from openlfr.store.models import Deployment, ThresholdFloor, UserModel, Watchlist
from openlfr.vision import registry
from openlfr.vision.registry import BackendSpec, ModelError, ModelIntegrityError

if TYPE_CHECKING:
    from openlfr.vision.engine import FaceEngine

#: The data directory's folder of added model files.
MODELS_DIRNAME = "models"
#: A model's name: what ``--backend`` takes.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: What a user model's templates are tagged with: its name and the start of its digest.
MODEL_ID_PREFIX = "user-"
#: States of a model.
BUILT_IN, NEEDS_CALIBRATION, CALIBRATED = "built-in", "needs calibration", "calibrated"
#: The evidence a user model's floor must carry (made by ``openlfr calibrate``).
CALIBRATION_KIND = "openlfr-threshold-calibration"


@dataclass(frozen=True)
class ModelInfo:
    """One recogniser as listed and shown: no model is loaded to make it."""

    name: str
    model_id: str
    origin: str  # "built-in" | "user"
    description: str
    state: str
    floor: float | None
    floor_source: str | None  # "default" | "calibrated" | None
    sha256: str | None = None
    path: str | None = None
    config: dict[str, Any] | None = None
    added_by: str | None = None
    added_at: str | None = None
    #: The calibration evidence behind the floor (dataset, FPIR, per-group rates), when the
    #: floor is calibrated: the fairness report.
    report: dict[str, Any] | None = None
    #: ``None`` unless checked: whether the file still has its recorded SHA-256.
    file_ok: bool | None = None
    file_problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.floor is not None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["usable"] = self.usable
        return out


# -- specs --------------------------------------------------------------------------------------

def _config(row: UserModel) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(row.config)
    return config


def _recogniser(row: UserModel, data_dir: Path | None) -> Any:
    from openlfr.vision.embed_onnx import OnnxRecogniser

    c = _config(row)
    path = str(data_dir / row.filename) if data_dir is not None else row.filename
    return OnnxRecogniser(path=path, sha256=row.sha256, model_id=row.model_id,
                          width=int(c["width"]), height=int(c["height"]),
                          mean=tuple(c["mean"]), std=tuple(c["std"]),  # type: ignore[arg-type]
                          colour=c["colour"], layout=c["layout"], input_name=c["input_name"],
                          output_name=c["output_name"], dim=int(c["dim"]))


def _user_spec(session: Session, row: UserModel, data_dir: Path | None) -> BackendSpec:
    from openlfr.vision.embed_onnx import user_spec

    floor = session.get(ThresholdFloor, row.floor_id) if row.floor_id is not None else None
    return user_spec(row.name, _recogniser(row, data_dir), _config(row)["detector"],
                     None if floor is None else _enforced(floor))


def _enforced(floor: ThresholdFloor) -> float:
    """A calibrated floor as enforced (the one that holds for its worst-measured group)."""
    from openlfr.governance.floors import enforced_threshold

    return enforced_threshold(floor)


def _row_named(session: Session, name: str) -> UserModel | None:
    return session.scalars(select(UserModel).where(UserModel.name == name)).first()


def added_model(session: Session, model_id: str) -> UserModel | None:
    """The record of the added model that makes ``model_id`` templates (``None``: not one)."""
    return _row_of(session, model_id)


def _row_of(session: Session, model_id: str) -> UserModel | None:
    if not model_id.startswith(MODEL_ID_PREFIX):
        return None
    return session.scalars(select(UserModel).where(UserModel.model_id == model_id)).first()


def _unknown(name: str, session: Session) -> ModelError:
    users = session.scalars(select(UserModel.name).order_by(UserModel.name)).all()
    return ModelError(f"unknown backend {name!r}; known: "
                      f"{', '.join([*registry.BACKENDS, *users])}")


def spec_named(session: Session, name: str, data_dir: Path | None = None) -> BackendSpec:
    """The spec of a backend by name (built-in or added), or a ModelError naming them all.
    ``data_dir`` locates an added model's file (needed only to load it)."""
    if name in registry.BACKENDS:
        return registry.BACKENDS[name]
    row = _row_named(session, name)
    if row is None:
        raise _unknown(name, session)
    return _user_spec(session, row, data_dir)


def spec_of(session: Session, model_id: str, data_dir: Path | None = None) -> BackendSpec:
    """The spec whose templates carry ``model_id`` (built-in or added), or a ModelError."""
    row = _row_of(session, model_id)
    if row is not None:
        return _user_spec(session, row, data_dir)
    return registry.spec_for_model_id(model_id)


def model_id_for(db: Database, name: str) -> str:
    """The model id of the backend called ``name``, from its spec: nothing is loaded."""
    with db.reading() as s:
        return spec_named(s, name).model_id


def engine_for(db: Database, model_id: str, data_dir: Path | None) -> FaceEngine:
    """The shared engine that makes ``model_id`` templates (an added model's file is checked
    against its recorded SHA-256 when it loads)."""
    from openlfr.vision.engine import get_engine

    with db.reading() as s:
        spec = spec_of(s, model_id, data_dir)
    return get_engine(spec)


def template_dim(session: Session, model_id: str) -> int:
    """The length of a ``model_id`` template (an added model's from its record, without
    loading it)."""
    row = _row_of(session, model_id)
    if row is not None:
        return int(_config(row)["dim"])
    from openlfr.vision.engine import get_engine

    return get_engine(registry.spec_for_model_id(model_id)).embedder.dim


def backend_names(db: Database | None = None) -> list[str]:
    """Every backend name: the built-in ones, then the added ones."""
    names = list(registry.BACKENDS)
    if db is not None:
        with db.reading() as s:
            names += s.scalars(select(UserModel.name).order_by(UserModel.name)).all()
    return names


# -- calibration gate ---------------------------------------------------------------------------

def attach_floor(session: Session, model_id: str, floor: ThresholdFloor) -> bool:
    """Make ``floor`` the calibrated floor of the added model ``model_id`` (in the caller's
    transaction); ``False`` for a built-in model. The evidence must be a calibration with
    its per-group (fairness) results: a floor without them does not make a model usable."""
    row = _row_of(session, model_id)
    if row is None:
        return False
    evidence = json.loads(floor.evidence)
    if (not isinstance(evidence, dict) or evidence.get("kind") != CALIBRATION_KIND
            or not isinstance(evidence.get("fairness"), dict)):
        raise RuleError(f"model {row.name}: its floor must come from `openlfr calibrate`, "
                        "with the fairness report on your evaluation data")
    row.floor_id = floor.id
    return True


# -- listing ------------------------------------------------------------------------------------

def _builtin_info(session: Session, spec: BackendSpec) -> ModelInfo:
    from openlfr.governance.floors import current_floor

    floor = current_floor(session, spec.model_id)
    return ModelInfo(spec.name, spec.model_id, spec.origin, spec.description, BUILT_IN,
                     floor.threshold, floor.source,
                     report=floor.evidence if floor.source == "calibrated" else None)


def _user_info(session: Session, row: UserModel, data_dir: Path | None,
               verify: bool) -> ModelInfo:
    floor = session.get(ThresholdFloor, row.floor_id) if row.floor_id is not None else None
    config = _config(row)
    path = data_dir / row.filename if data_dir is not None else None
    file_ok: bool | None = None
    problem: str | None = None
    if verify and path is not None:
        from openlfr.vision.embed_onnx import read_verified

        try:
            read_verified(path, row.sha256, f"model {row.name}")
            file_ok = True
        except ModelIntegrityError as exc:
            file_ok, problem = False, f"integrity failure: {exc}"
        except ModelError as exc:
            file_ok, problem = False, str(exc)
    return ModelInfo(
        row.name, row.model_id, "user",
        f"{config['width']}x{config['height']} {config['colour'].upper()}, {config['dim']}-d, "
        f"with {config['detector']}",
        CALIBRATED if floor is not None else NEEDS_CALIBRATION,
        _enforced(floor) if floor is not None else None,
        "calibrated" if floor is not None else None,
        sha256=row.sha256, path=str(path) if path is not None else row.filename,
        config=config, added_by=row.created_by, added_at=row.created_at.isoformat(),
        report=json.loads(floor.evidence) if floor is not None else None,
        file_ok=file_ok, file_problem=problem)


def list_models(db: Database, data_dir: Path | None = None,
                verify: bool = False) -> list[ModelInfo]:
    """Every recogniser with its state and floor; ``verify`` re-hashes added files."""
    with db.reading() as s:
        out = [_builtin_info(s, spec) for spec in registry.BACKENDS.values()]
        rows = s.scalars(select(UserModel).order_by(UserModel.name)).all()
        out += [_user_info(s, row, data_dir, verify) for row in rows]
    return out


def get_model(db: Database, name: str, data_dir: Path | None = None,
              verify: bool = True) -> ModelInfo:
    with db.reading() as s:
        if name in registry.BACKENDS:
            return _builtin_info(s, registry.BACKENDS[name])
        row = _row_named(s, name)
        if row is None:
            raise NotFound(str(_unknown(name, s)))
        return _user_info(s, row, data_dir, verify)


# -- adding and removing ------------------------------------------------------------------------

def _floats(values: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise RuleError(f"{what} {values!r}: three numbers, one per colour channel") from None
    if len(out) == 1:
        out = out * 3
    if len(out) != 3 or not all(v == v and abs(v) < 1e6 for v in out):
        raise RuleError(f"{what} {list(values)}: three finite numbers, one per colour channel")
    return out  # type: ignore[return-value]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def add_model(db: Database, actor: Actor, data_dir: Path, source: Path, name: str, *,
              width: int, height: int, mean: Any, std: Any, colour: str = "rgb",
              detector: str = "yunet") -> ModelInfo:
    """Check, hash, copy and record a user's ONNX recogniser (audited ``model.add``).

    Bad input raises :class:`RuleError` or :class:`ModelError` (both invalid input, one
    line); a name or a file already added is refused. The model is not usable for a
    deployment until calibrated."""
    from openlfr.vision.embed_onnx import COLOURS, OnnxRecogniser, inspect_model, read_model_file

    require(db, actor, Perm.SETTINGS, "model", name)
    name = (name or "").strip()
    if not NAME.match(name):
        raise RuleError(f"model name {name!r}: a lower-case letter, then lower-case letters, "
                        "digits, _ or - (at most 32)")
    if name in registry.BACKENDS:
        raise RuleError(f"model name {name!r}: the name of a built-in backend")
    colour = (colour or "").strip().lower()
    if colour not in COLOURS:
        raise RuleError(f"colour order {colour!r}: one of {', '.join(COLOURS)}")
    if detector not in registry.DETECTORS:
        raise RuleError(f"detector {detector!r}: one of {', '.join(registry.DETECTORS)}")
    mean3, std3 = _floats(mean, "mean"), _floats(std, "std")
    with db.reading() as s:
        if _row_named(s, name) is not None:
            raise RuleError(f"a model named {name!r} already exists")
    source = Path(source)
    data = read_model_file(source)
    digest = hashlib.sha256(data).hexdigest()
    with db.reading() as s:
        same = s.scalars(select(UserModel.name).where(UserModel.sha256 == digest)).first()
    if same is not None:
        raise RuleError(f"{source}: this file is already added, as model {same!r}")
    filename = f"{MODELS_DIRNAME}/{digest}.onnx"
    target = data_dir / filename
    existed = target.exists()
    _write_private(target, data)
    try:
        config = OnnxRecogniser(path=str(target), sha256=digest,
                                model_id=f"{MODEL_ID_PREFIX}{name}-{digest[:12]}",
                                width=int(width), height=int(height), mean=mean3, std=std3,
                                colour=colour)
        try:
            config = inspect_model(config)
        except ModelError as exc:
            raise RuleError(str(exc).replace(target.name, source.name)) from None
        stored = {"width": config.width, "height": config.height, "mean": list(mean3),
                  "std": list(std3), "colour": colour, "layout": config.layout,
                  "input_name": config.input_name, "output_name": config.output_name,
                  "dim": config.dim, "detector": detector, "original_name": source.name}
        with db.session() as s:
            row = UserModel(name=name, model_id=config.model_id, sha256=digest,
                            filename=filename, config=json.dumps(stored, sort_keys=True),
                            created_by=actor.name)
            s.add(row)
            s.flush()
            audit_log.record(s, actor.name, "model.add", "model", row.id, {
                "name": name, "model_id": config.model_id, "sha256": digest,
                "input_size": f"{config.width}x{config.height}", "dim": config.dim,
                "colour": colour, "detector": detector,
            })
    except BaseException:
        if not existed:
            target.unlink(missing_ok=True)
        raise
    return get_model(db, name, data_dir, verify=False)


def remove_model(db: Database, actor: Actor, data_dir: Path, name: str) -> None:
    """Remove an added model and its file (audited ``model.remove``); refused while a
    deployment or a watchlist uses it. Its floors stay, as the record of what was decided."""
    require(db, actor, Perm.SETTINGS, "model", name)
    with db.session() as s:
        row = _row_named(s, name)
        if row is None:
            if name in registry.BACKENDS:
                raise RuleError(f"{name} is a built-in backend: it cannot be removed")
            raise NotFound(str(_unknown(name, s)))
        deployments = s.scalars(select(Deployment.id)
                                .where(Deployment.model_id == row.model_id)).all()
        if deployments:
            raise RuleError(f"model {name} is used by deployment(s) "
                            f"{', '.join(str(d) for d in deployments)}: it cannot be removed")
        watchlists = s.scalars(select(Watchlist.id)
                               .where(Watchlist.model_id == row.model_id)).all()
        if watchlists:
            raise RuleError(f"model {name} is used by watchlist(s) "
                            f"{', '.join(str(w) for w in watchlists)}: it cannot be removed")
        audit_log.record(s, actor.name, "model.remove", "model", row.id, {
            "name": name, "model_id": row.model_id, "sha256": row.sha256})
        filename = row.filename
        s.delete(row)
    (data_dir / filename).unlink(missing_ok=True)
