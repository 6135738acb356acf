"""systemd's notification protocol (``sd_notify(3)``) without a dependency, for ``Type=notify`` units.

A datagram of ``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract-namespace name written with a leading ``@``). Without ``$NOTIFY_SOCKET`` (not started by
systemd) every call does nothing. A failed send is ignored: the service runs on, and systemd, missing
READY=1, reports the start as failed on its own timeout.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to systemd (or nowhere when ``$NOTIFY_SOCKET`` is unset)."""

    def __init__(self, address: str | None = None) -> None:
        """``address``: the socket (default: ``$NOTIFY_SOCKET``)."""
        raw = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self._address: str | bytes | None = None
        if raw.startswith("@"):
            self._address = b"\0" + raw[1:].encode()  # abstract namespace
        elif raw.startswith("/"):
            self._address = raw
        self.sent = 0
        """Datagrams sent."""

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="...")``); True if the datagram was sent."""
        if self._address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall("\n".join(lines).encode())
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        """Startup (or a reload) is done."""
        return self.notify(READY=1, STATUS=status) if status else self.notify(READY=1)

    def reloading(self) -> bool:
        """A reload starts (with the ``CLOCK_MONOTONIC`` time systemd wants for ``Type=notify-reload``)."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        """Shutdown starts."""
        return self.notify(STOPPING=1)

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive for ``WatchdogSec=``."""
        return self.notify(WATCHDOG=1)
