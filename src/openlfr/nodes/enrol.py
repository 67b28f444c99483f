"""The node's side of enrolment (``openlfr node enroll --server URL --token T``).

The node makes its two key pairs (:class:`openlfr.nodes.keys.NodeKeys`), keeps the private
halves in its own folder (0700, files 0600), and sends the public halves with the one-time
token to the centre (``POST /api/v1/nodes/enrol``). The centre's answer (its id, its subjects,
its buckets, the broker's address) is kept beside the keys as ``node.json``. If the centre
refuses, the keys just made are removed, so that enrolling can be tried again with a new token.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from openlfr.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from openlfr.nodes.keys import KEY_FILENAME, NodeKeys, b64

ENROLMENT_FILENAME = "node.json"
ENROL_PATH = "/api/v1/nodes/enrol"

_BY_STATUS: dict[int, type[Exception]] = {400: InvalidInput, 401: Unauthenticated,
                                          403: Forbidden, 404: NotFound, 409: Conflict,
                                          422: InvalidInput}


def default_node_dir() -> Path:
    """``$XDG_DATA_HOME/openlfr-node`` or ``~/.local/share/openlfr-node``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openlfr-node"


def _post(url: str, body: dict[str, Any], ca_file: Path | None, timeout: float) -> Any:
    if not url.lower().startswith(("https://", "http://")):
        raise InvalidInput(f"the server {url!r} is not a web address (https://...)",
                           field="server")
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not isinstance(detail, str):
            detail = f"the centre answered {exc.code}"
        raise _BY_STATUS.get(exc.code, Unavailable)(f"the centre refused: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"the centre at {url} cannot be reached: {reason}") from None


def enroll(server: str, token: str, folder: Path, *, ca_file: Path | None = None,
           timeout: float = 30) -> dict[str, Any]:
    """Enroll this machine as a node of the centre at ``server`` with ``token``; returns the
    centre's answer (also kept in ``folder/node.json``)."""
    if (folder / KEY_FILENAME).exists():
        raise Conflict(f"{folder} holds a node's keys already: a node enrolls once (use "
                       "another folder for another node)")
    keys = NodeKeys.generate()
    key_file = keys.save(folder)
    try:
        answer = _post(server.rstrip("/") + ENROL_PATH,
                       {"token": token.strip(), "signing_key": b64(keys.signing_public),
                        "box_key": b64(keys.box_public)}, ca_file, timeout)
        if not isinstance(answer, dict) or answer.get("nkey") != keys.nkey:
            raise Unavailable("the centre's answer does not name this node's key")
    except BaseException:
        key_file.unlink(missing_ok=True)
        raise
    answer["server"] = server
    fd = os.open(folder / ENROLMENT_FILENAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(answer, f, indent=2, sort_keys=True)
    return answer


def enrolment(folder: Path) -> dict[str, Any]:
    """What the centre told this node when it enrolled."""
    try:
        data = json.loads((folder / ENROLMENT_FILENAME).read_text())
    except FileNotFoundError:
        raise InvalidInput(f"{folder} is not an enrolled node's folder (no "
                           f"{ENROLMENT_FILENAME}): run openlfr node enroll", field="node_dir"
                           ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{folder / ENROLMENT_FILENAME} is not an enrolment",
                           field="node_dir")
    return data
