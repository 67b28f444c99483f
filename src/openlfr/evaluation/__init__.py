"""Accuracy evaluation: pairs files, verification metrics, the verify run and its plots.

``openlfr.evaluation.plots`` (matplotlib) is not imported here; import it when plotting.
"""

from openlfr.evaluation.metrics import (
    KFoldResult,
    OperatingPoint,
    Roc,
    ThresholdChoice,
    accuracy,
    auc,
    best_threshold,
    eer,
    fold_tar_at_far,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
)
from openlfr.evaluation.pairs import Pair, PairsError, read_pairs
from openlfr.evaluation.verify import FailedImage, PairScore, VerifyReport, run_verify

__all__ = [
    "FailedImage",
    "KFoldResult",
    "OperatingPoint",
    "Pair",
    "PairScore",
    "PairsError",
    "Roc",
    "ThresholdChoice",
    "VerifyReport",
    "accuracy",
    "auc",
    "best_threshold",
    "eer",
    "fold_tar_at_far",
    "kfold_accuracy",
    "read_pairs",
    "roc_auc",
    "roc_curve",
    "run_verify",
    "tar_at_far",
]
