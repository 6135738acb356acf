"""The project's test Mosquitto (scripts/mosquitto) seen from Python: where it listens, who may connect, clients.

``Broker`` is what the ``mosquitto`` fixture yields (tests/mesh/conftest.py). Three listeners on loopback:

- ``port``: plain MQTT, anonymous, no ACL (unit-level tests, benchmarks);
- ``auth_port``: username + password, the per-node ACL of ``docker/mosquitto.acl``;
- ``tls_port``: TLS (the generated test CA, ``ca_file``) + username + password, the same ACL.

Users ``node-a``, ``node-b``, ``node-c`` (``users``: name -> password). ``client()`` makes an
``aiomqtt.Client`` for one of them with TCP_NODELAY set (see ``NODELAY``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt

REPO_DIR = Path(__file__).resolve().parents[2]
SCRIPT = REPO_DIR / "scripts" / "mosquitto"

Listener = Literal["plain", "auth", "tls"]

NODELAY: tuple[int, int, int] = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
"""Socket option for ``aiomqtt.Client(socket_options=[NODELAY])``.

paho-mqtt never sets TCP_NODELAY on its client socket, so small MQTT packets wait for Nagle's algorithm
(QoS 0 publish->receive p99 14 ms at 1,000 msg/s without it, 0.55-0.71 ms with it: shared/PERFORMANCE.md).
aiomqtt applies ``socket_options`` right after the TCP (and TLS) connection is made, before CONNACK, on
every (re)connection made with ``async with client``."""


class BrokerError(RuntimeError):
    """scripts/mosquitto failed (the message carries its output, including the broker log tail)."""


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 300.0) -> str:
    """Run scripts/mosquitto ARGS; its stdout, or BrokerError with stdout and stderr."""
    proc = subprocess.run(  # fixed argv
        [str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise BrokerError(f"scripts/mosquitto {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def can_run() -> str | None:
    """None when scripts/mosquitto can start a broker here, else why not (a skip reason)."""
    if shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or os.geteuid() == 0:
        return None
    return (
        "the mesh tests need a real Mosquitto: not installed and not root, so scripts/mosquitto cannot "
        "apt-get it (run as root once, or: apt-get install mosquitto mosquitto-clients)"
    )


def password_var(user: str) -> str:
    """The variable of ``scripts/mosquitto env`` holding USER's password."""
    return "CALLSHIELD_MQTT_PASSWORD_" + user.upper().replace("-", "_").replace(".", "_")


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines (shell-quoted) of ``scripts/mosquitto env``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words and "=" in words[0]:
            key, _, value = words[0].partition("=")
            out[key] = value
    return out


@dataclass
class Broker:
    """The running test broker."""

    host: str
    port: int
    """plain, anonymous, no ACL"""
    auth_port: int
    """username + password, per-node ACL"""
    tls_port: int
    """TLS (``ca_file``) + username + password, per-node ACL"""
    ca_file: Path
    users: dict[str, str]
    """username -> password (node ids: node-a, node-b, node-c)"""
    directory: Path
    """generated files: passwd (hashed password file), server.crt/.key, mosquitto.conf, mosquitto.log"""
    log_file: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_script(cls, env: dict[str, str] | None = None) -> Broker:
        """Describe the broker scripts/mosquitto manages (after ``start``: the passwords exist)."""
        values = parse_env(run_script("env", env=env))
        users = {user: values[password_var(user)] for user in values["CALLSHIELD_MQTT_USERS"].split()}
        return cls(
            host=values["CALLSHIELD_MQTT_HOST"],
            port=int(values["CALLSHIELD_MQTT_PORT"]),
            auth_port=int(values["CALLSHIELD_MQTT_AUTH_PORT"]),
            tls_port=int(values["CALLSHIELD_MQTT_TLS_PORT"]),
            ca_file=Path(values["CALLSHIELD_MQTT_CA"]),
            users=users,
            directory=Path(values["CALLSHIELD_MQTT_DIR"]),
            log_file=Path(values["CALLSHIELD_MQTT_LOG"]),
            env=dict(env or os.environ),
        )

    # -- the broker process (e.g. an outage in the middle of a test: stop(), then start() again) --

    def start(self) -> None:
        run_script("start", env=self.env)

    def stop(self) -> None:
        run_script("stop", env=self.env)

    def is_running(self) -> bool:
        return subprocess.run([str(SCRIPT), "status"], env=self.env, capture_output=True, check=False).returncode == 0

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no broker log: {exc})"

    # -- clients --

    def password(self, user: str) -> str:
        return self.users[user]

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the broker against the test CA, hostname included."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def listener_port(self, listener: Listener) -> int:
        return {"plain": self.port, "auth": self.auth_port, "tls": self.tls_port}[listener]

    def client(
        self,
        user: str | None = None,
        *,
        listener: Listener | None = None,
        password: str | None = None,
        nodelay: bool = True,
        **kwargs: Any,
    ) -> aiomqtt.Client:
        """An ``aiomqtt.Client`` for this broker (not connected: ``async with`` it).

        ``listener`` defaults to ``plain`` without a user and ``auth`` with one; ``password`` defaults to
        the user's own; ``tls`` gets ``tls_context()`` unless ``tls_context=`` is given. Other keyword
        arguments go to ``aiomqtt.Client`` (identifier, will, protocol, clean_session, ...).
        """
        if listener is None:
            listener = "plain" if user is None else "auth"
        if user is not None and password is None:
            password = self.users[user]
        if listener == "tls":
            kwargs.setdefault("tls_context", self.tls_context())
        if nodelay:
            kwargs["socket_options"] = [NODELAY, *kwargs.get("socket_options", ())]
        return aiomqtt.Client(self.host, self.listener_port(listener), username=user, password=password, **kwargs)


def drop_connection(client: aiomqtt.Client) -> None:
    """Cut CLIENT's TCP connection without an MQTT DISCONNECT, as a crash or a network failure would.

    The broker sees the connection end abnormally and publishes the client's last will; the client's
    ``messages`` iteration then raises ``aiomqtt.MqttError``. (aiomqtt has no public handle on its socket:
    this reaches into the paho client.)
    """
    sock = client._client.socket()
    if not isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        raise RuntimeError(f"client has no TCP connection to cut ({sock!r})")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def tcp_nodelay(client: aiomqtt.Client) -> bool:
    """Whether CLIENT's connected socket has TCP_NODELAY set."""
    sock = client._client.socket()
    if not isinstance(sock, socket.socket):
        return False
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
