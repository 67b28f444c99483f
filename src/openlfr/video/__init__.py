"""Frames to sightings to alerts: sources, tracking, best shot, the per-camera pipeline, the
multi-camera runner and the privacy-masked preview.

Depends on ``vision`` (and on ``watchlist`` only through the ``GallerySearch`` protocol);
``vision`` never imports this package.
"""

from openlfr.video.bestshot import ShotPolicy
from openlfr.video.pipeline import CameraPipeline, FrameResult, GallerySearch, PipelineConfig
from openlfr.video.runner import Runner, Summary
from openlfr.video.sinks import AlertSink, CallbackSink, MemorySink, SerialSink
from openlfr.video.sources import (
    Backoff,
    CaptureSource,
    FrameSource,
    SourceError,
    SourceSpec,
    SourceState,
    SourceStatus,
    open_sources,
    parse_sources,
)
from openlfr.video.types import Alert, Frame, Sighting

__all__ = [
    "Alert",
    "AlertSink",
    "Backoff",
    "CallbackSink",
    "CameraPipeline",
    "CaptureSource",
    "Frame",
    "FrameResult",
    "FrameSource",
    "GallerySearch",
    "MemorySink",
    "PipelineConfig",
    "Runner",
    "SerialSink",
    "ShotPolicy",
    "Sighting",
    "SourceError",
    "SourceSpec",
    "SourceState",
    "SourceStatus",
    "Summary",
    "open_sources",
    "parse_sources",
]
