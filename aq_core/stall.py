"""The stall watch (``stall_timeout:``): an attempt whose log has not grown for that long is stalled."""

from __future__ import annotations

import os
from pathlib import Path


class StallWatch:
    """Follows the size of one attempt's log; polled from the attempt's supervision loop (one
    ``fstat`` per poll, no thread of its own)."""

    def __init__(self, log_path: Path, limit: float, now: float) -> None:
        self.limit = limit
        self.fd = os.open(log_path, os.O_RDONLY | os.O_NOFOLLOW)
        self.size = os.fstat(self.fd).st_size
        self.since = now

    def stalled(self, now: float) -> bool:
        """True when the log has not changed size for ``limit`` seconds up to ``now`` (monotonic)."""
        size = os.fstat(self.fd).st_size
        if size != self.size:
            self.size, self.since = size, now
            return False
        return now - self.since >= self.limit

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
