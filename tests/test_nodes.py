"""Sites and nodes: keys and their text forms, sealing to a node, the store and the services
(adding, enrolling with a one-time token, disabling; cameras that name their node) on SQLite
and PostgreSQL (``gov``), and the broker parts against a real ``nats-server``
(tests/natsfix.py): a node signs in with its own nkey and reads only its own bucket, publishes
only on its own subjects, is cut off at once when disabled, and receives its desired state and
its gallery sealed to its key (no template bytes on the broker)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import nkeys
import numpy as np
import pytest
from sqlalchemy import select, update

from openlfr.errors import (
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from openlfr.governance import deployments as deps
from openlfr.governance import nodes
from openlfr.governance.reconcile import desired_gallery
from openlfr.nodes import broker, desired
from openlfr.nodes.keys import NodeKeys, b64, open_sealed, seal
from openlfr.store.enums import NodeStatus
from openlfr.store.models import AuditRecord, Node
from tests.govfix import Gov, audit_records, authorise
from tests.natsfix import NatsServer
from tests.test_gov_deployments import approved_watchlist, plan

# -- keys -----------------------------------------------------------------------------------------


def test_nkeys_made_from_our_keys_are_the_ones_nats_makes() -> None:
    keys = NodeKeys.generate()
    theirs = nkeys.from_seed(bytearray(keys.seed.encode()))
    assert theirs.public_key.decode() == keys.nkey
    assert keys.nkey.startswith("U") and keys.seed.startswith("SU")
    message = b"nonce from the server"
    assert keys.signing.sign(message) == theirs.sign(message)


def test_a_sealed_gallery_opens_only_with_the_node_key_and_its_name() -> None:
    node, other = NodeKeys.generate(), NodeKeys.generate()
    data = b"templates " * 100
    blob = seal(data, node.box_public, b"deployment-1")
    assert data not in blob
    assert open_sealed(blob, node.box, b"deployment-1") == data
    with pytest.raises(IntegrityFailure):
        open_sealed(blob, other.box, b"deployment-1")
    with pytest.raises(IntegrityFailure):
        open_sealed(blob, node.box, b"deployment-2")
    altered = bytearray(blob)
    altered[-1] ^= 1
    with pytest.raises(IntegrityFailure):
        open_sealed(bytes(altered), node.box, b"deployment-1")


def test_node_keys_are_kept_private_and_never_replaced(tmp_path) -> None:
    keys = NodeKeys.generate()
    folder = tmp_path / "node"
    path = keys.save(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    again = NodeKeys.load(folder)
    assert again.nkey == keys.nkey and again.box_public == keys.box_public
    with pytest.raises(InvalidInput, match="has keys already"):
        NodeKeys.generate().save(folder)


# -- the store and the services ------------------------------------------------------------------


def _site_and_node(gov: Gov, site: str = "high-street", name: str = "van-1"):
    nodes.add_site(gov.db, gov.actors["admin"], site, "Vans parked on the high street")
    return nodes.add_node(gov.db, gov.actors["admin"], site, name)


def _enrol(gov: Gov, token: str, keys: NodeKeys | None = None, settings=None):
    keys = keys or NodeKeys.generate()
    return keys, nodes.enrol(gov.db, settings or gov.settings, token, b64(keys.signing_public),
                             b64(keys.box_public))


def test_an_admin_adds_a_node_and_its_token_is_stored_only_hashed(gov: Gov) -> None:
    issued = _site_and_node(gov)
    assert issued.token.startswith(nodes.TOKEN_PREFIX) and issued.node.status == "pending"
    assert issued.expires_at - datetime.now(UTC) > timedelta(hours=23)
    with gov.db.reading() as s:
        row = s.scalars(select(Node)).one()
        assert row.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
        logged = " ".join(r.details for r in s.scalars(select(AuditRecord)))
    assert issued.token not in logged and issued.token[len(nodes.TOKEN_PREFIX):] not in logged
    assert [r.action for r in audit_records(gov, "node.add")] == ["node.add"]
    assert [s.name for s in nodes.list_sites(gov.db, gov.actors["au1"])] == ["high-street"]
    assert nodes.list_sites(gov.db, gov.actors["au1"])[0].nodes == 1


def test_only_an_admin_manages_nodes_and_bad_names_are_refused(gov: Gov) -> None:
    with pytest.raises(Forbidden, match="only an administrator"):
        nodes.add_site(gov.db, gov.actors["ao1"], "gate")
    nodes.add_site(gov.db, gov.actors["admin"], "gate")
    with pytest.raises(Conflict, match="already a site"):
        nodes.add_site(gov.db, gov.actors["admin"], "gate")
    with pytest.raises(NotFound, match="no site 'elsewhere'"):
        nodes.add_node(gov.db, gov.actors["admin"], "elsewhere", "van-1")
    with pytest.raises(InvalidInput, match="may not contain spaces"):
        nodes.add_node(gov.db, gov.actors["admin"], "gate", "van 1")
    with pytest.raises(InvalidInput, match="valid for 1 to"):
        nodes.add_node(gov.db, gov.actors["admin"], "gate", "van-1", valid_hours=0)
    nodes.add_node(gov.db, gov.actors["admin"], "gate", "van-1")
    with pytest.raises(Conflict, match="already a node"):
        nodes.add_node(gov.db, gov.actors["admin"], "gate", "van-1")
    with pytest.raises(Forbidden):
        nodes.disable(gov.db, gov.settings, gov.actors["op1"], "van-1", "lost")


def test_a_node_enrolls_once_with_its_token(gov: Gov) -> None:
    issued = _site_and_node(gov)
    keys, enrolment = _enrol(gov, issued.token)
    assert enrolment.nkey == keys.nkey and enrolment.broker_url is None
    assert enrolment.subject_prefix == f"openlfr.node.{enrolment.node_id}"
    shown = nodes.show_node(gov.db, gov.actors["au1"], "van-1")
    assert (shown.status, shown.nkey, shown.box_key) == ("enrolled", keys.nkey,
                                                         b64(keys.box_public))
    assert shown.token_expires_at is None
    (entry,) = audit_records(gov, "node.enrol")
    assert entry.actor == "node:van-1"
    with pytest.raises(Unauthenticated, match="unknown or already used"):
        _enrol(gov, issued.token)
    with pytest.raises(Unauthenticated, match="not an enrolment token"):
        _enrol(gov, "hello")
    with pytest.raises(InvalidInput, match="signing_key"):
        nodes.enrol(gov.db, gov.settings, issued.token, "c2hvcnQ", b64(keys.box_public))


def test_an_expired_token_is_refused_and_a_new_one_works(gov: Gov) -> None:
    issued = _site_and_node(gov)
    with gov.db.session() as s:
        s.execute(update(Node).values(token_expires_at=datetime.now(UTC) - timedelta(
            seconds=1)))
    with pytest.raises(Unauthenticated, match="expired"):
        _enrol(gov, issued.token)
    again = nodes.new_token(gov.db, gov.actors["admin"], "van-1", valid_hours=2)
    with pytest.raises(Unauthenticated):
        _enrol(gov, issued.token)  # the old one no longer works
    _enrol(gov, again.token)
    with pytest.raises(Conflict, match="only a node waiting to enroll"):
        nodes.new_token(gov.db, gov.actors["admin"], "van-1")


def test_a_disabled_node_is_kept_as_a_record_and_cannot_enroll(gov: Gov) -> None:
    issued = _site_and_node(gov)
    with pytest.raises(InvalidInput, match="say why"):
        nodes.disable(gov.db, gov.settings, gov.actors["admin"], "van-1", " ")
    shown = nodes.disable(gov.db, gov.settings, gov.actors["admin"], "van-1", "stolen van")
    assert (shown.status, shown.disabled_by, shown.disable_reason) == (
        "disabled", "admin", "stolen van")
    with pytest.raises(Unauthenticated):
        _enrol(gov, issued.token)
    with pytest.raises(Conflict, match="already disabled"):
        nodes.disable(gov.db, gov.settings, gov.actors["admin"], "van-1", "again")
    (entry,) = audit_records(gov, "node.disable")
    assert json.loads(entry.details)["reason"] == "stolen van"


def test_a_camera_names_the_node_that_runs_it(gov: Gov) -> None:
    _site_and_node(gov)
    cams = (deps.CameraSpec("gate", "/nonexistent/gate.avi", node="van-1"),
            deps.CameraSpec("hall", "/nonexistent/hall.avi"))
    dep_id = deps.create(gov.db, gov.actors["op1"], plan(cameras=cams),
                         keyring=gov.system.keyring)
    view = deps.show(gov.db, gov.actors["ao1"], dep_id)
    assert [(c.name, c.node, c.node_site) for c in view.cameras] == [
        ("gate", "van-1", "high-street"), ("hall", None, None)]
    (created,) = audit_records(gov, "deployment.create")
    assert json.loads(created.details)["cameras"][0]["node"] == "van-1"
    assert nodes.show_node(gov.db, gov.actors["au1"], "van-1").cameras == (f"{dep_id}/gate",)
    # an edit that does not name the node keeps it; naming "" moves the camera to the centre
    deps.edit(gov.db, gov.actors["op1"], dep_id, keyring=gov.system.keyring, cameras=[
        deps.CameraSpec("gate", "/nonexistent/gate.avi"),
        deps.CameraSpec("hall", "/nonexistent/hall.avi", node="van-1")])
    view = deps.show(gov.db, gov.actors["ao1"], dep_id)
    assert [c.node for c in view.cameras] == ["van-1", "van-1"]
    changed = deps.edit(gov.db, gov.actors["op1"], dep_id, keyring=gov.system.keyring,
                        cameras=[deps.CameraSpec("gate", "/nonexistent/gate.avi", node=""),
                                 deps.CameraSpec("hall", "/nonexistent/hall.avi")])
    assert changed == ["cameras"]
    assert [c.node for c in deps.show(gov.db, gov.actors["ao1"], dep_id).cameras] == [
        None, "van-1"]
    with pytest.raises(InvalidInput, match="no node 'van-9'"):
        deps.create(gov.db, gov.actors["op1"], plan(cameras=(
            deps.CameraSpec("gate", "/x.avi", node="van-9"),)), keyring=gov.system.keyring)
    nodes.disable(gov.db, gov.settings, gov.actors["admin"], "van-1", "broken")
    with pytest.raises(InvalidInput, match="disabled"):
        deps.create(gov.db, gov.actors["op1"], plan(cameras=(
            deps.CameraSpec("gate", "/x.avi", node="van-1"),)), keyring=gov.system.keyring)


def test_the_migration_matches_the_models(gov: Gov) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from openlfr.store.models import Base

    with gov.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        if gov.kind == "sqlite":
            # SQLAlchemy does not read back the name and ON DELETE of a reference declared
            # with its column (ALTER TABLE ... ADD COLUMN): read SQLite's own account of it
            refs = conn.exec_driver_sql("PRAGMA foreign_key_list(cameras)").all()
            assert [(r[2], r[3], r[4], r[6]) for r in refs if r[3] == "node_id"] == [
                ("nodes", "node_id", "id", "SET NULL")]
            diffs = [d for d in diffs if not (d[0] in ("remove_fk", "add_fk")
                                              and d[1].table.name == "cameras"
                                              and d[1].column_keys == ["node_id"])]
    ours = [d for d in diffs if any(t in repr(d) for t in ("'sites'", "'nodes'", "node_id"))]
    assert not ours, ours


# -- against a real broker ------------------------------------------------------------------------


def _node_run(coro):
    return asyncio.run(coro)


def test_a_node_uses_only_its_own_subjects_and_buckets(gov: Gov, nats_server: NatsServer
                                                       ) -> None:
    settings = nats_server.centre(gov.settings)
    nodes.add_site(gov.db, gov.actors["admin"], "high-street")
    mine = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-1")
    other = nodes.add_node(gov.db, gov.actors["admin"], "high-street", "van-2")
    keys, enrolment = _enrol(gov, mine.token, settings=settings)
    other_keys, other_enrolment = _enrol(gov, other.token, settings=settings)
    assert enrolment.broker_url == nats_server.url
    centre = nodes.broker_of(settings)
    assert centre is not None
    centre.put_desired(other_enrolment.node_id, b'{"secret": "the other node"}')
    centre.put_desired(enrolment.node_id, b'{"mine": true}')

    async def as_node() -> None:
        async with broker.NodeClient(nats_server.url, enrolment.node_id, keys.seed) as c:
            assert await c.desired() == b'{"mine": true}'
            await c.publish(f"{enrolment.subject_prefix}.health", b"ok")
            with pytest.raises(Forbidden, match="refused publishing"):
                await c.publish(f"{other_enrolment.subject_prefix}.alert", b"forged")
            js = c.nc.jetstream(timeout=1)
            with pytest.raises(Exception, match="timeout"):  # refused: no answer comes back
                await js.stream_info(f"KV_{other_enrolment.state_bucket}")
            kv = await js.key_value(enrolment.state_bucket)
            with pytest.raises(Exception, match="timeout"):  # it may not write its own state
                await kv.put("desired", b'{"forged": true}')
    _node_run(as_node())
    assert centre.get_desired(enrolment.node_id) == b'{"mine": true}'
    log = nats_server.log()
    assert "Publish Violation" in log and f"{other_enrolment.subject_prefix}.alert" in log

    async def with_wrong_key() -> None:
        async with broker.NodeClient(nats_server.url, enrolment.node_id,
                                     NodeKeys.generate().seed):
            pass
    with pytest.raises(Forbidden, match="refused this node's credentials"):
        _node_run(with_wrong_key())
    assert other_keys.nkey in nats_server.auth_file.read_text()


def test_a_disabled_node_is_cut_off_at_once(gov: Gov, nats_server: NatsServer) -> None:
    settings = nats_server.centre(gov.settings)
    issued = _site_and_node(gov)
    keys, enrolment = _enrol(gov, issued.token, settings=settings)

    async def connected_then_disabled() -> float:
        async with broker.NodeClient(nats_server.url, enrolment.node_id, keys.seed) as c:
            await c.publish(f"{enrolment.subject_prefix}.health", b"ok")
            t0 = time.monotonic()
            await asyncio.to_thread(nodes.disable, gov.db, settings, gov.actors["admin"],
                                    "van-1", "the van was stolen")
            while not c.nc.is_closed and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.02)
            assert c.nc.is_closed, "the broker kept the disabled node connected"
            return time.monotonic() - t0
    seconds = _node_run(connected_then_disabled())
    assert seconds < 2, seconds

    async def again() -> None:
        async with broker.NodeClient(nats_server.url, enrolment.node_id, keys.seed):
            pass
    with pytest.raises(Forbidden):
        _node_run(again())
    assert keys.nkey not in nats_server.auth_file.read_text()
    assert [r.actor for r in audit_records(gov, "node.disable")] == ["admin"]


def test_desired_state_and_a_gallery_sealed_to_the_node(gov: Gov, nats_server: NatsServer,
                                                        face_images) -> None:
    settings = nats_server.centre(gov.settings)
    issued = _site_and_node(gov)
    keys, enrolment = _enrol(gov, issued.token, settings=settings)
    wid = approved_watchlist(gov, face_images["obama"])
    cams = (deps.CameraSpec("gate", "rtsp://user:pw@10.0.0.5/gate", node="van-1",
                            zones=(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)),)),
            deps.CameraSpec("hall", "/nonexistent/hall.avi"))
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    keyring = gov.system.keyring
    assert nodes.sync_desired(gov.db, keyring, settings) != []  # the empty state first
    deps.start(gov.db, gov.actors["op1"], dep_id)

    (sent,) = nodes.sync_desired(gov.db, keyring, settings)
    assert (sent.node, sent.deployments, sent.cameras, sent.galleries) == (
        "van-1", (dep_id,), 1, (dep_id,))
    assert nodes.sync_desired(gov.db, keyring, settings) == []  # nothing changed: nothing sent

    async def as_node() -> tuple[bytes, bytes]:
        async with broker.NodeClient(nats_server.url, enrolment.node_id, keys.seed) as c:
            doc = await c.desired()
            assert doc is not None
            return doc, await c.gallery(desired.gallery_object(dep_id))
    raw_doc, sealed = _node_run(as_node())
    doc = desired.parse_document(raw_doc)
    (dep,) = doc["deployments"]
    assert (dep["id"], dep["model_id"], [c["name"] for c in dep["cameras"]]) == (
        dep_id, plan().model_id, ["gate"])
    assert dep["cameras"][0]["zones"] == [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]]
    assert b"pw@" not in raw_doc and b"10.0.0.5" not in raw_doc
    source = open_sealed(__import__("base64").urlsafe_b64decode(
        dep["cameras"][0]["source"] + "=="), keys.box,
        desired.seal_context(enrolment.node_id, f"camera/{dep_id}/gate"))
    assert source == b"rtsp://user:pw@10.0.0.5/gate"

    # the broker holds no template: not in the object store's raw messages
    with gov.db.reading() as s:
        gallery, names = desired_gallery(s, keyring, dep_id)
    vectors = gallery.vectors
    assert len(vectors) >= 1
    centre = nodes.broker_of(settings)
    assert centre is not None
    raw = b"".join(centre.raw_messages(f"OBJ_{enrolment.gallery_bucket}"))
    raw += b"".join(centre.raw_messages(f"KV_{enrolment.state_bucket}"))
    for row in vectors:
        for dtype in (np.float32, np.float64):
            assert row.astype(dtype).tobytes()[:16] not in raw
    # the node's private key opens it, and it is the deployment's gallery
    opened, got_names = desired.unpack_gallery(open_sealed(
        sealed, keys.box, desired.seal_context(enrolment.node_id,
                                               desired.gallery_object(dep_id))))
    assert opened.model_id == gallery.model_id and got_names == names
    assert opened.subject_ids == gallery.subject_ids
    np.testing.assert_allclose(opened.vectors, vectors, atol=1e-6)

    # stopped: the node is told to run nothing, and the gallery leaves the broker
    deps.stop(gov.db, gov.actors["op1"], dep_id, "the operation is over")
    (sent,) = nodes.sync_desired(gov.db, keyring, settings)
    assert sent.deployments == ()
    assert centre.galleries(enrolment.node_id) == []
    entries = audit_records(gov, "node.desired_state")
    assert [json.loads(e.details)["deployments"] for e in entries] == [[], [dep_id], []]
    assert all(e.actor == "system" for e in entries)
    with gov.db.reading() as s:
        assert s.scalars(select(Node.status)).one() == NodeStatus.ENROLLED


def test_nodes_sharing_a_plan_are_each_told_only_their_own_cameras(
        gov: Gov, nats_server: NatsServer, face_images) -> None:
    settings = nats_server.centre(gov.settings)
    ids = {}
    for name in ("van-1", "van-2"):
        issued = (_site_and_node(gov, name=name) if name == "van-1"
                  else nodes.add_node(gov.db, gov.actors["admin"], "high-street", name))
        ids[name] = _enrol(gov, issued.token, settings=settings)[1].node_id
    wid = approved_watchlist(gov, face_images["obama"])
    cams = tuple(deps.CameraSpec(f"cam-{i}", f"/nonexistent/{i}.avi",
                                 node="van-1" if i % 2 else "van-2") for i in range(1, 6))
    dep_id = deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=cams),
                         keyring=gov.system.keyring)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    deps.start(gov.db, gov.actors["op1"], dep_id)
    sent = {x.node: x for x in nodes.sync_desired(gov.db, gov.system.keyring, settings)}
    assert (sent["van-1"].cameras, sent["van-2"].cameras) == (3, 2)
    with gov.db.reading() as s:
        for name, expected in (("van-1", ["cam-1", "cam-3", "cam-5"]),
                               ("van-2", ["cam-2", "cam-4"])):
            node = s.get(Node, ids[name])
            assert node is not None
            (dep,) = nodes.desired_document(s, node)["deployments"]
            assert [c["name"] for c in dep["cameras"]] == expected
    assert nodes.sync_desired(gov.db, gov.system.keyring, settings) == []
    # paused: both are told to run nothing
    deps.pause(gov.db, gov.actors["op1"], dep_id, "moving a camera")
    resent = {x.node: x for x in nodes.sync_desired(gov.db, gov.system.keyring, settings)}
    assert set(resent) == {"van-1", "van-2"}
    assert all(x.deployments == () for x in resent.values())


def test_over_tls_the_broker_is_checked_against_the_configured_ca(
        gov: Gov, nats_tls_server: NatsServer) -> None:
    srv = nats_tls_server
    settings = srv.centre(gov.settings)
    assert settings.nats_url.startswith("tls://") and settings.nats_ca_file == srv.ca_file
    issued = _site_and_node(gov)
    keys, enrolment = _enrol(gov, issued.token, settings=settings)
    assert enrolment.broker_url == srv.url
    centre = nodes.broker_of(settings)
    assert centre is not None
    centre.put_desired(enrolment.node_id, b'{"over": "tls"}')

    async def as_node(ca_file) -> bytes | None:
        async with broker.NodeClient(srv.url, enrolment.node_id, keys.seed,
                                     ca_file=ca_file) as c:
            return await c.desired()
    assert _node_run(as_node(srv.ca_file)) == b'{"over": "tls"}'
    with pytest.raises(Unavailable, match="cannot be reached"):  # the system's CAs: refused
        _node_run(as_node(None))
    plain = broker.Broker(srv.url.replace("tls://", "nats://"), broker.load_or_create_seed(
        srv.centre_seed_file))
    with pytest.raises(Unavailable):  # the broker requires TLS
        plain.get_desired(enrolment.node_id)


def test_a_broker_that_is_down_does_not_undo_an_enrolment_and_a_disabling_says_so(
        gov: Gov, nats_server: NatsServer, caplog) -> None:
    settings = nats_server.centre(gov.settings)
    first = _site_and_node(gov)
    nats_server.stop()
    with caplog.at_level("WARNING", logger="openlfr.governance.nodes"):
        keys, _ = _enrol(gov, first.token, settings=settings)
    assert "run `openlfr nodes broker-users`" in caplog.text
    assert keys.nkey in settings.nats_auth_path.read_text()  # in once the broker is back
    assert nodes.show_node(gov.db, gov.actors["au1"], "van-1").status == "enrolled"
    with pytest.raises(Unavailable, match="it may still be connected"):
        nodes.disable(gov.db, settings, gov.actors["admin"], "van-1", "stolen")
    assert nodes.show_node(gov.db, gov.actors["au1"], "van-1").status == "disabled"
    assert [r.action for r in audit_records(gov, "node.disable")] == ["node.disable"]
