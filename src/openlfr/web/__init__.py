"""The web console, the JSON API and the public transparency pages (FastAPI).

Layout (each file one job; routes stay thin and call the governance services with the
:class:`openlfr.governance.authz.Actor` that :mod:`openlfr.web.deps` resolves):

* ``app.py``       :func:`create_app`: middleware, error handlers, routers, lifespan.
* ``deps.py``      who is calling (cookie session or bearer token) → ``Actor``; CSRF check.
* ``security.py``  security headers, CSRF tokens, rate limits.
* ``ratelimit.py`` the per-address limit on the public pages and API.
* ``sessions.py``  browser sessions (server-side, hashed tokens) and the web secret.
* ``tokens.py``    API tokens for integrations (admin-created, role-scoped, hashed, revocable).
* ``render.py``    the Jinja2 environment, its filters, the CSRF cookie and token.
* ``events.py``    live alerts pushed to the operators' console (Server-Sent Events).
* ``charts.py``    the public summary's chart (an SVG drawn on the server).
* ``jobs.py``      background work of ``openlfr serve`` (deployment runs, retention).
* ``routes/``      one module per area (``api_*`` the JSON API, ``console*`` the console,
  ``public`` the transparency pages, ``auth`` and ``account`` signing in); ``templates/``
  Jinja2; ``static/`` CSS and JS.

Residents' questions are :mod:`openlfr.governance.questions`; the public figures are
:mod:`openlfr.transparency.public`.
"""
