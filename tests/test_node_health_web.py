"""A node's health in the console and the API, on SQLite and PostgreSQL (``gov``): the nodes
page says whether each node is heard, the node's page shows its lease per deployment and each
camera's health, and ``GET /api/v1/nodes/{name}`` includes them; the enrolment answer names the
centre's two public keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from openlfr.governance import deployments as deps
from openlfr.governance import leases, nodes
from openlfr.governance.ingest import Ingest
from openlfr.nodes import desired, protocol
from openlfr.nodes.keys import NodeKeys, b64, box_public, unb64
from openlfr.store.enums import Role
from openlfr.store.models import Node
from tests.govfix import Gov, authorise, bearer_headers, run_cli
from tests.test_gov_deployments import approved_watchlist, plan
from tests.test_web_core import login


def test_a_nodes_health_is_shown_and_answered(gov: Gov, client: TestClient,
                                              face_images: dict[str, Path]) -> None:
    nodes.add_site(gov.db, gov.actors["admin"], "high-street")
    issued = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-1")
    keys = NodeKeys.generate()
    r = client.post("/api/v1/nodes/enrol", json={"token": issued.token,
                                                  "signing_key": b64(keys.signing_public),
                                                  "box_key": b64(keys.box_public)})
    assert r.status_code == 200, r.text
    answer = r.json()
    node_id = answer["node_id"]
    signing = nodes.centre_signing(gov.settings)
    assert unb64(answer["centre_signing_key"], "k") == signing.public_key().public_bytes_raw()
    box = nodes.centre_box(gov.settings)
    assert unb64(answer["centre_box_key"], "k") == box_public(box)
    assert gov.settings.nats_box_path.stat().st_mode & 0o777 == 0o600
    wid = approved_watchlist(gov, face_images["obama"])
    dep = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=(
        deps.CameraSpec("gate", "/nonexistent/gate.avi", node="van-1"),)),
        keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep)
    deps.start(gov.db, gov.actors["op1"], dep)
    ask = (protocol.lease_subject(node_id), f"_INBOX.node.{node_id}.abc")
    assert leases.answer(gov.db, signing, *ask) is None  # its desired state is not written yet
    with gov.db.session() as s:  # what writing it to the broker records (no broker here)
        node = s.get(Node, node_id)
        assert node is not None
        node.desired_digest = desired.digest(nodes.desired_document(s, node))
    assert leases.answer(gov.db, signing, *ask) is not None
    beat = protocol.seal_envelope(keys.signing, "health", node_id, "h-1", {
        "interval": 5, "run": "r1", "cameras": [
            {"deployment": dep, "camera": "gate", "connected": True, "state": "running",
             "fps_in": 25.0, "fps_analysed": 12.5, "frames": 321, "dropped": 4,
             "reconnects": 1}]}, sent_at=datetime.now(UTC))
    assert Ingest(gov.system, box).health(protocol.health_subject(node_id), beat)

    login(client, "au1")
    page = client.get("/console/nodes")
    assert page.status_code == 200 and 'data-online="yes"' in page.text
    detail = client.get("/console/nodes/van-1")
    assert detail.status_code == 200, detail.text
    assert "online" in detail.text and f"#{dep}" in detail.text
    assert "25.0 / 12.5" in detail.text and ">321<" in detail.text
    assert client.get("/console/nodes/nobody").status_code == 404

    headers = bearer_headers(gov, "health")[Role.AUDITOR]
    shown = client.get("/api/v1/nodes/van-1", headers=headers).json()
    assert shown["online"] is True and str(dep) in shown["lease"]
    assert shown["camera_health"][0]["frames"] == 321


def test_the_lease_is_set_from_the_command_line_and_the_console(gov: Gov,
                                                                client: TestClient) -> None:
    dep = deps.create(gov.db, gov.actors["op1"], plan(), keyring=gov.system.keyring)
    r = run_cli(gov, "deployment", "edit", dep, "--lease-seconds", "5", user="op1")
    assert r.returncode == 2 and "lease lasts 10 to 3600 seconds" in r.stderr, r.stderr
    r = run_cli(gov, "deployment", "edit", dep, "--lease-seconds", "90", user="op1")
    assert r.returncode == 0, r.stderr
    assert deps.show(gov.db, gov.actors["op1"], dep).lease_seconds == 90
    login(client, "op1")
    page = client.get(f"/console/deployments/{dep}")
    assert 'name="lease_seconds"' in page.text and 'value="90"' in page.text
    assert 'id="dep-lease">90 s' in page.text
