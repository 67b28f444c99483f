"""Who is on the watchlist and how to find them: storage (one file per watchlist) and search."""

from openlfr.watchlist.gallery import Gallery
from openlfr.watchlist.store import Reference, Subject, Watchlist, WatchlistError

__all__ = ["Gallery", "Reference", "Subject", "Watchlist", "WatchlistError"]
