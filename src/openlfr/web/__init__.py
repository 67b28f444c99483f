"""The web console, the JSON API and the public transparency pages (FastAPI).

Layout (each file one job; routes stay thin and call the governance services with the
:class:`openlfr.governance.authz.Actor` that :mod:`openlfr.web.deps` resolves):

* ``app.py``      :func:`create_app`: middleware, error handlers, routers, lifespan.
* ``deps.py``     who is calling (cookie session or bearer token) → ``Actor``; CSRF check.
* ``security.py`` security headers, CSRF tokens, rate limits.
* ``sessions.py`` browser sessions (server-side, hashed tokens) and the web secret.
* ``tokens.py``   API tokens for integrations (admin-created, role-scoped, hashed, revocable).
* ``questions.py`` residents' questions and objections, and their answers.
* ``public_data.py`` the figures of the public pages (nothing that identifies anyone).
* ``jobs.py``     background work of ``openlfr serve`` (deployment runner, retention).
* ``routes/``     one module per area; ``templates/`` Jinja2; ``static/`` CSS and JS.
"""
