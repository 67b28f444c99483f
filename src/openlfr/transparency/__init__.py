"""Statistics and public reports derived from the data and checked against the audit log:
per deployment and per camera figures (:mod:`openlfr.transparency.stats`) and the EU AI Act
Art. 12 record of each deployment (:mod:`openlfr.transparency.art12`). Counts only: nothing
here reads a crop, a template or a free-text reason."""

from openlfr.transparency.art12 import art12_records
from openlfr.transparency.stats import (
    CameraFigures,
    DeploymentFigures,
    Totals,
    check_against_audit,
    deployment_stats,
    totals,
)

__all__ = [
    "CameraFigures",
    "DeploymentFigures",
    "Totals",
    "art12_records",
    "check_against_audit",
    "deployment_stats",
    "totals",
]
