"""The public routes under load from anonymous callers: the residents' question limit holds
under parallel posts, the chart is drawn once per set of figures (on its own thread), and one
address has a budget of requests on the public routes (429 with Retry-After). A real server
(uvicorn) and real threads; SQLite and PostgreSQL (``gov``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from openlfr.store.models import CameraStats, PublicQuestion
from openlfr.web.app import create_app
from openlfr.web.ratelimit import TokenBucket
from tests.govfix import Gov
from tests.test_web_core import META_CSRF
from tests.test_web_public import Demo


@contextmanager
def _server(app: object) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                           log_level="warning"))
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


def test_forty_parallel_questions_store_at_most_five(gov: Gov, demo: Demo) -> None:
    app = create_app(gov.system)
    with _server(app) as base:
        url = f"{base}/public/deployments/{demo.ended}"
        with httpx.Client(timeout=60) as client:
            token = META_CSRF.search(client.get(url).text).group(1)  # type: ignore[union-attr]
            barrier = threading.Barrier(40)

            def send(i: int) -> int:
                barrier.wait()
                return client.post(f"{url}/questions", data={
                    "kind": "question", "csrf_token": token,
                    "text": f"Parallel question number {i} about the cameras"}).status_code

            with ThreadPoolExecutor(40) as pool:
                codes = list(pool.map(send, range(40)))
    with gov.db.reading() as s:
        stored = s.scalar(select(func.count()).select_from(PublicQuestion))
    assert stored == 5, codes
    assert codes.count(429) == 35 and codes.count(303) == 5


def test_an_invalid_question_does_not_use_up_the_limit(gov: Gov, demo: Demo) -> None:
    with TestClient(create_app(gov.system)) as c:
        url = f"/public/deployments/{demo.ended}"
        token = META_CSRF.search(c.get(url).text).group(1)  # type: ignore[union-attr]
        for _ in range(6):
            r = c.post(f"{url}/questions", data={"kind": "question", "csrf_token": token,
                                                  "text": "short"})
            assert r.status_code == 400
        for i in range(5):
            r = c.post(f"{url}/questions", follow_redirects=False, data={
                "kind": "question", "csrf_token": token,
                "text": f"A real question number {i} about this"})
            assert r.status_code == 303


def test_the_chart_is_drawn_once_per_set_of_figures(gov: Gov, demo: Demo) -> None:
    app = create_app(gov.system)
    charts = app.state.web.charts
    chart = f"/public/summary/chart.svg?year={demo.year}"
    with TestClient(app) as c:
        first = c.get(chart)
        assert first.status_code == 200 and "<svg" in first.text
        assert charts.draws == 1
        again = c.get(chart)
        assert again.content == first.content and charts.draws == 1
        # concurrent requests for the same figures share one drawing
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda _: c.get(chart).content, range(8)))
        assert set(bodies) == {first.content} and charts.draws == 1
        # new figures, a new drawing
        with gov.db.session() as s:
            row = s.scalars(select(CameraStats).where(
                CameraStats.deployment_id == demo.running)).one()
            row.tracks += 5000  # the chart draws people passing
        changed = c.get(chart)
        assert changed.status_code == 200 and charts.draws == 2
        assert changed.content != first.content
        assert c.get(chart).content == changed.content and charts.draws == 2
    # drawn on the chart's own thread, not on the request threads
    assert charts._executor is None or charts._executor._max_workers == 1


def test_public_routes_have_a_per_address_budget(gov: Gov, demo: Demo) -> None:
    app = create_app(gov.system, trust_proxy=True)
    st = app.state.web
    st.public_limit = TokenBucket(burst=3, rate=0.05)
    with TestClient(app) as c:
        for _ in range(3):
            assert c.get("/public").status_code == 200
        r = c.get("/api/v1/public/deployments")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 20
        assert "too many requests" in r.json()["detail"]
        assert r.headers.get("x-content-type-options") == "nosniff"  # still under the headers
        # another address (as the trusted proxy says: its own, last entry) has its own budget
        other = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
        assert c.get("/public/deployments.json", headers=other).status_code == 200
        # a client cannot escape by forging the earlier entries
        for forged in ("1.1.1.1", "2.2.2.2"):
            h = {"X-Forwarded-For": f"{forged}, 198.51.100.7"}
            c.get("/public", headers=h)
        assert c.get("/public", headers={"X-Forwarded-For": "9.9.9.9, 198.51.100.7"}
                     ).status_code == 429
        # the console and the API are not part of this budget
        assert c.get("/healthz").status_code == 200
        assert c.get("/login").status_code == 200


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=2, rate=0.5, clock=lambda: now[0])
    assert bucket.take("a") == 0 and bucket.take("a") == 0
    assert bucket.take("a") == pytest.approx(2.0)
    assert bucket.take("b") == 0
    now[0] = 2.0
    assert bucket.take("a") == 0
    assert bucket.take("a") > 0
