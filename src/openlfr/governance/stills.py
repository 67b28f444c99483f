"""Still frames for drawing a camera's analysis zones and privacy masks.

A still is one frame grabbed from the camera's source when the plan is written (``take``), kept
**in memory only** (never in the database, never on disk), as JPEG, for the plan's life: it is
destroyed when the deployment ends (:func:`openlfr.governance.deployments.stop` and the end of
its window call :func:`discard`), and is never served for an ended or deleted deployment. A
restart of the server forgets every still: take another. Taking one is audited (the camera and
the frame size, never the image). The faces of the people it catches are anonymised before it
is held, as in the live preview (:func:`openlfr.video.preview.mask_frame`): drawing zones needs
the place, not who was passing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2

from openlfr.audit import log as audit_log
from openlfr.errors import Conflict, InvalidInput, NotFound
from openlfr.governance.authz import Actor, Perm, require
from openlfr.store.crypto import Keyring
from openlfr.store.db import Database
from openlfr.store.enums import DeploymentStatus
from openlfr.store.models import Deployment
from openlfr.video.preview import mask_frame
from openlfr.video.sources import grab_still
from openlfr.vision.detect import YuNetDetector
from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.tiling import detect_tiled

#: At most this many stills are held (the oldest goes first), and at most this wide.
MAX_STILLS = 32
MAX_WIDTH = 1280
#: The states in which a deployment's plan (and so its stills) lives.
LIVING = (DeploymentStatus.DRAFT, DeploymentStatus.AUTHORISED, DeploymentStatus.RUNNING,
          DeploymentStatus.PAUSED)

_lock = threading.Lock()
_stills: OrderedDict[tuple[int, str], bytes] = OrderedDict()


def discard(deployment_id: int) -> int:
    """Forget every still of a deployment; how many there were."""
    with _lock:
        keys = [k for k in _stills if k[0] == deployment_id]
        for key in keys:
            del _stills[key]
    return len(keys)


def held(deployment_id: int) -> list[str]:
    """The cameras of a deployment with a still in memory."""
    with _lock:
        return [k[1] for k in _stills if k[0] == deployment_id]


def take(db: Database, keyring: Keyring, actor: Actor, deployment_id: int,
         camera: str) -> tuple[int, int]:
    """Grab one frame from ``camera`` of a draft or authorised deployment and hold it; its
    (width, height). :class:`InvalidInput` when the camera cannot be read."""
    from openlfr.governance.deployments import CHANGEABLE, camera_sources

    require(db, actor, Perm.DEPLOYMENT_EDIT, "deployment", str(deployment_id))
    with db.reading() as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        if dep.status not in CHANGEABLE:
            raise Conflict(f"deployment {deployment_id} is {dep.status.value}: its plan can no "
                           "longer be changed")
        sources = dict(camera_sources(s, keyring, dep))
    if camera not in sources:
        raise NotFound(f"deployment {deployment_id} has no camera named {camera!r}")
    image = grab_still(camera, sources[camera])
    height, width = image.shape[:2]
    if width > MAX_WIDTH:
        image = as_image(cv2.resize(image, (MAX_WIDTH, round(height * MAX_WIDTH / width)),
                                    interpolation=cv2.INTER_AREA))
    image = without_faces(image)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise InvalidInput(f"camera {camera}: the frame could not be encoded", field="camera")
    with _lock:
        _stills[(deployment_id, camera)] = jpeg.tobytes()
        _stills.move_to_end((deployment_id, camera))
        while len(_stills) > MAX_STILLS:
            _stills.popitem(last=False)
    with db.session() as s:
        audit_log.record(s, actor.name, "deployment.still", "deployment", deployment_id,
                         {"camera": camera, "width": width, "height": height,
                          "kept": "in memory, for the plan's life"})
    return width, height


def without_faces(image: ImageArray) -> ImageArray:
    """``image`` with every face found (at its own resolution, in tiles, so small faces too)
    anonymised beyond recognition."""
    faces = detect_tiled(YuNetDetector(score_threshold=0.5), image)
    return mask_frame(image, faces, [None] * len(faces), {})


def get(db: Database, actor: Actor, deployment_id: int, camera: str) -> bytes | None:
    """The still of ``camera`` (JPEG), or ``None``. A deployment that ended (or no longer
    exists) has none: they are destroyed here if still held."""
    require(db, actor, Perm.DEPLOYMENT_READ, "deployment", str(deployment_id))
    with db.reading() as s:
        dep = s.get(Deployment, deployment_id)
        living = dep is not None and dep.status in LIVING
    if not living:
        discard(deployment_id)
        return None
    with _lock:
        return _stills.get((deployment_id, camera))
