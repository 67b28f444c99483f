"""The rules: people and roles, watchlists and their approval, deployments and their
authorisation, thresholds and their floor, alerts and human adjudication, retention."""
