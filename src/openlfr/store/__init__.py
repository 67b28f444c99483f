"""The database (SQLAlchemy models, Alembic migrations, sessions) and encryption at rest."""
