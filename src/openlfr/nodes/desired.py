"""What the centre tells a node: its desired state document and its galleries, as bytes.

**The desired state** is one JSON document per node (:func:`document_bytes`), written to the
node's key-value bucket (key ``desired``)::

    {"version": 1, "node": 3, "name": "van-1", "site": "high-street",
     "deployments": [
       {"id": 7, "name": "...", "threshold": 0.48, "model_id": "sface-...",
        "planned_end": "2026-05-01T18:00:00+00:00",
        "gallery": {"object": "deployment-7", "fingerprint": "<sha256 hex>"},
        "cameras": [{"name": "gate", "source": "<sealed, base64>",
                     "zones": [[[x, y], ...], ...], "masks": [...]}]}]}

Only running deployments with at least one camera on the node are listed; a deployment not
listed must not run there. Camera sources (they may hold credentials) are sealed to the node's
key like the galleries.

**A gallery** (:func:`pack_gallery`) is a NumPy ``.npz`` archive (no pickles) of the templates,
their subject and reference ids, the model id and the subjects' display names; it is sealed to
the node's key (:func:`openlfr.nodes.keys.seal`, bound to the object's name and the node) before
it leaves the centre.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np

from openlfr.errors import IntegrityFailure
from openlfr.watchlist.gallery import Gallery

VERSION = 1


def gallery_object(deployment_id: int) -> str:
    """The name of a deployment's gallery in a node's object store."""
    return f"deployment-{int(deployment_id)}"


def seal_context(node_id: int, name: str) -> bytes:
    """What a sealed object is bound to (its node and its name): a gallery or source moved to
    another name or node does not open."""
    return f"openlfr node {int(node_id)} {name}".encode()


def pack_gallery(gallery: Gallery, names: dict[str, str]) -> bytes:
    """A gallery's templates and names as bytes (to be sealed before it leaves the centre)."""
    meta = json.dumps({"model_id": gallery.model_id, "dim": gallery.dim, "names": names},
                      sort_keys=True)
    buf = io.BytesIO()
    np.savez(buf, vectors=gallery.vectors.astype(np.float32),
             subject_ids=np.array(gallery.subject_ids, dtype=np.str_),
             reference_ids=np.array(gallery.reference_ids, dtype=np.str_),
             meta=np.array(meta))
    return buf.getvalue()


def unpack_gallery(data: bytes) -> tuple[Gallery, dict[str, str]]:
    """The gallery and names :func:`pack_gallery` packed."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            gallery = Gallery(str(meta["model_id"]), int(meta["dim"]))
            gallery.add_many([str(s) for s in z["subject_ids"]],
                             [str(r) for r in z["reference_ids"]], z["vectors"])
            names = {str(k): str(v) for k, v in dict(meta["names"]).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityFailure(f"not a packed gallery: {type(exc).__name__}") from None
    return gallery, names


def document_bytes(document: dict[str, Any]) -> bytes:
    """The document as the bytes written to the bucket (stable: sorted keys, no spaces)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(document_bytes(document)).hexdigest()


def parse_document(data: bytes) -> dict[str, Any]:
    """A desired state document read back (node side); :class:`IntegrityFailure` if it is
    not one."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityFailure("the desired state is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise IntegrityFailure("the desired state is not a version 1 document")
    return doc
