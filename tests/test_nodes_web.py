"""Sites and nodes through the front ends, on SQLite and PostgreSQL (``gov``): the console's
page (an administrator adds a site and a node and sees its one-time token once; others see the
nodes, not the forms; disabling asks first and is audited), the JSON API, and the command line
end to end: ``openlfr nodes add`` on the centre, then ``openlfr node enroll`` in another process
against the centre served over HTTP, which makes the node's keys in a private folder."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from openlfr.governance import deployments as deps
from openlfr.governance import nodes
from openlfr.governance.system import System
from openlfr.nodes.keys import NodeKeys, b64
from openlfr.web.app import create_app
from tests.govfix import Gov, audit_records, bearer_headers, run_cli
from tests.test_gov_deployments import plan
from tests.test_web_core import login


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no form on the page"
    return match.group(1)


def test_an_admin_adds_a_node_in_the_console(gov: Gov, client: TestClient) -> None:
    login(client, "admin")
    csrf = _csrf(client, "/console/nodes")
    r = client.post("/console/sites", data={"csrf_token": csrf, "name": "high street"},
                    follow_redirects=False)
    assert r.status_code == 400 and "may not contain spaces" in r.text  # shown on the page
    assert 'value="high street"' in r.text  # the field kept
    r = client.post("/console/sites", data={"csrf_token": csrf, "name": "high-street",
                                            "description": "Vans on the high street"},
                    follow_redirects=False)
    assert r.status_code == 303
    r = client.post("/console/nodes", data={"csrf_token": csrf, "site": "high-street",
                                            "name": "van-1", "valid_hours": "2"})
    assert r.status_code == 201
    token = re.search(r'id="node-token"[^>]*value="([^"]+)"', r.text)
    assert token and token.group(1).startswith(nodes.TOKEN_PREFIX)
    assert "openlfr node enroll --server http://testserver --token" in r.text
    # shown once: the page itself never shows it again
    again = client.get("/console/nodes")
    assert token.group(1) not in again.text and "waiting to enroll" in again.text
    # the node enrolls through the API with it
    keys = NodeKeys.generate()
    client.cookies.clear()
    r = client.post("/api/v1/nodes/enrol", json={
        "token": token.group(1), "signing_key": b64(keys.signing_public),
        "box_key": b64(keys.box_public)})
    assert r.status_code == 200, r.text
    assert r.json()["nkey"] == keys.nkey and r.json()["name"] == "van-1"
    r = client.post("/api/v1/nodes/enrol", json={
        "token": token.group(1), "signing_key": b64(keys.signing_public),
        "box_key": b64(keys.box_public)})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    r = client.post("/api/v1/nodes/enrol", json={"token": token.group(1), "signing_key": "x",
                                                 "box_key": "y"})
    assert r.status_code == 400 and "signing_key" in r.json()["detail"]
    # an auditor sees the node and where it runs, not the forms
    login(client, "au1")
    page = client.get("/console/nodes")
    assert keys.nkey in page.text and "Add a node" not in page.text
    assert 'action="/console/nodes/van-1/disable"' not in page.text
    # disabling asks first, then is done and audited
    login(client, "admin")
    csrf = _csrf(client, "/console/nodes")
    r = client.post("/console/nodes/van-1/disable", data={"csrf_token": csrf,
                                                         "reason": "the van was sold"})
    assert r.status_code == 200 and "Disable node van-1 for good?" in r.text
    assert not audit_records(gov, "node.disable")
    r = client.post("/console/nodes/van-1/disable", data={
        "csrf_token": csrf, "reason": "the van was sold", "confirm": "yes"},
        follow_redirects=False)
    assert r.status_code == 303
    (entry,) = audit_records(gov, "node.disable")
    assert json.loads(entry.details)["reason"] == "the van was sold"
    assert "disabled" in client.get("/console/nodes").text


def test_the_deployment_page_says_where_each_camera_runs(gov: Gov, client: TestClient) -> None:
    nodes.add_site(gov.db, gov.actors["admin"], "gate-a")
    nodes.add_node(gov.db, gov.actors["admin"], "gate-a", "box-1")
    headers = bearer_headers(gov, "nodes")
    body = {"name": "Stadium", "site": "Stadium", "location": "Gate A", "purpose": "p",
            "alternatives": "Stewards do not suffice", "legal_basis": "b", "dpia_ref": "d",
            "equality_ref": "e", "planned_start": "2030-01-01T08:00:00+00:00",
            "planned_end": "2030-01-01T18:00:00+00:00",
            "cameras": [{"name": "gate", "source": "/nonexistent/a.avi", "node": "box-1"},
                        {"name": "hall", "source": "/nonexistent/b.avi"}]}
    from openlfr.store.enums import Role

    r = client.post("/api/v1/deployments", json=body, headers=headers[Role.OPERATOR])
    assert r.status_code == 201, r.text
    dep = r.json()
    assert [(c["name"], c["node"], c["node_site"]) for c in dep["cameras"]] == [
        ("gate", "box-1", "gate-a"), ("hall", None, None)]
    bad = {**body, "cameras": [{"name": "gate", "source": "/x.avi", "node": "nowhere"}]}
    r = client.post("/api/v1/deployments", json=bad, headers=headers[Role.OPERATOR])
    assert r.status_code == 400 and "no node 'nowhere'" in r.json()["detail"]
    login(client, "ao1")
    page = client.get(f"/console/deployments/{dep['id']}").text
    assert "node box-1" in page and "at gate-a" in page and "the centre" in page
    r = client.get("/api/v1/nodes/box-1", headers=headers[Role.AUDITOR])
    assert r.json()["cameras"] == [f"{dep['id']}/gate"]


@contextmanager
def serving(system: System) -> Iterator[str]:
    """The centre's web app over HTTP on a free port; its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(system), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def served(gov: Gov) -> Iterator[str]:
    with serving(gov.system) as url:
        yield url


def test_a_node_enrolls_from_the_command_line(gov: Gov, served: str, tmp_path: Path) -> None:
    assert run_cli(gov, "nodes", "add-site", "high-street", user="admin").returncode == 0
    added = run_cli(gov, "nodes", "add", "van-1", "--site", "high-street", user="admin")
    assert added.returncode == 0, added.stderr
    token = re.search(r"(olfr-enrol-\S+)", added.stdout)
    assert token, added.stdout
    refused = run_cli(gov, "nodes", "add", "van-2", "--site", "high-street", user="op1")
    assert refused.returncode == 3 and "only an administrator" in refused.stderr

    folder = tmp_path / "node"
    enrolled = run_cli(gov, "node", "enroll", "--server", served, "--token", token.group(1),
                       "--node-dir", folder)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "enrolled as node van-1 at site high-street" in " ".join(enrolled.stderr.split())
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("node.key", "node.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    keys = NodeKeys.load(folder)
    answer = json.loads((folder / "node.json").read_text())
    assert answer["nkey"] == keys.nkey and answer["subject_prefix"].startswith("openlfr.node.")
    listed = run_cli(gov, "nodes", "list", "--json", user="au1")
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["status"], row["box_key"]) == ("van-1", "enrolled",
                                                            b64(keys.box_public))

    # the token is spent: a second machine is refused, in one line, and keeps no keys
    other = tmp_path / "other"
    again = run_cli(gov, "node", "enroll", "--server", served, "--token", token.group(1),
                    "--node-dir", other)
    assert again.returncode == 4, again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "already used" in again.stderr
    assert not (other / "node.key").exists()
    # the same folder twice, and a centre that does not answer
    twice = run_cli(gov, "node", "enroll", "--server", served, "--token", "olfr-enrol-x",
                    "--node-dir", folder)
    assert twice.returncode == 6 and "enrolls once" in twice.stderr
    nowhere = run_cli(gov, "node", "enroll", "--server", "http://127.0.0.1:9", "--token",
                      "olfr-enrol-x", "--node-dir", tmp_path / "third")
    assert nowhere.returncode == 8 and "cannot be reached" in nowhere.stderr
    bad = run_cli(gov, "node", "enroll", "--server", "ftp://centre", "--token", "t",
                  "--node-dir", tmp_path / "fourth")
    assert bad.returncode == 2 and "not a web address" in bad.stderr

    # a camera moved to the node from the command line; then the node is disabled
    dep_id = deps.create(gov.db, gov.actors["op1"], plan(), keyring=gov.system.keyring)
    moved = run_cli(gov, "deployment", "edit", dep_id, "--node", "gate=van-1", user="op1")
    assert moved.returncode == 0, moved.stderr
    assert [c.node for c in deps.show(gov.db, gov.actors["au1"], dep_id).cameras] == ["van-1"]
    wrong = run_cli(gov, "deployment", "edit", dep_id, "--node", "door=van-1", user="op1")
    assert wrong.returncode == 2 and "no camera named 'door'" in wrong.stderr
    off = run_cli(gov, "nodes", "disable", "van-1", "--reason", "replaced", user="admin")
    assert off.returncode == 0, off.stderr
    assert [r.actor for r in audit_records(gov, "node.disable")] == ["admin"]
