"""Smoke tests of the project's test Mosquitto (scripts/mosquitto) and of the shipped sample config.

What the mesh relies on, checked against a real broker with aiomqtt: QoS 1 delivery, passwords, TLS
with the test CA, the per-node ACL of docker/mosquitto.acl, retained status and the last will.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from .broker import REPO_DIR, Broker, Listener, drop_connection, tcp_nodelay


async def next_message(client: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        return await anext(client.messages)


def assert_not_authorized(exc: BaseException) -> None:
    """A refused CONNECT: CONNACK "not authorised" (3.1.1 code 5, which paho-mqtt 2 reports as the MQTT 5
    reason code 135 "Not authorized"). Mosquitto does not say whether the user or the password was wrong."""
    assert isinstance(exc, aiomqtt.MqttCodeError), repr(exc)
    assert str(exc) == "[code:135] Not authorized", str(exc)


async def connect_error(client: aiomqtt.Client, timeout: float = 5.0) -> BaseException:
    """The error of connecting CLIENT (the test fails if it connects)."""
    try:
        async with asyncio.timeout(timeout), client:
            pass
    except (aiomqtt.MqttError, TimeoutError) as exc:
        return exc
    pytest.fail("the connection was accepted")


# -- plain listener -------------------------------------------------------------------------------


async def test_qos1_round_trip_on_the_plain_listener(mosquitto: Broker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}/verdicts/node-a"
    async with mosquitto.client() as sub, mosquitto.client() as pub:
        await sub.subscribe(f"{topic_prefix}/verdicts/+", qos=1)
        for i in range(5):
            await pub.publish(topic, f"v{i}".encode(), qos=1)  # returns once PUBACK is in
        got = [await next_message(sub) for _ in range(5)]
        assert tcp_nodelay(sub) and tcp_nodelay(pub)
    assert [m.payload for m in got] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert all(str(m.topic) == topic and m.qos == 1 and not m.retain for m in got)


async def test_topic_prefixes_isolate_tests(mosquitto: Broker, topic_prefix: str) -> None:
    other = "callshield/v1/some-other-test"
    async with mosquitto.client() as sub, mosquitto.client() as pub:
        await sub.subscribe(f"{topic_prefix}/#", qos=1)
        await pub.publish(f"{other}/verdicts/node-a", b"not for us", qos=1)
        await pub.publish(f"{topic_prefix}/verdicts/node-a", b"ours", qos=1)
        assert (await next_message(sub)).payload == b"ours"  # same publisher: in order, nothing before


async def test_nodelay_can_be_left_off(mosquitto: Broker) -> None:
    async with mosquitto.client(nodelay=False) as c:
        assert not tcp_nodelay(c)  # paho-mqtt does not set it: the socket_options of Broker.client() do


# -- username + password --------------------------------------------------------------------------


async def test_auth_listener_accepts_each_node_with_its_password(mosquitto: Broker) -> None:
    assert sorted(mosquitto.users) == ["node-a", "node-b", "node-c"]
    for user in mosquitto.users:
        async with asyncio.timeout(5), mosquitto.client(user, listener="auth") as c:
            assert tcp_nodelay(c)


@pytest.mark.parametrize(
    ("user", "password"),
    [("node-a", "wrong"), ("node-a", None), (None, None), ("node-x", "whatever")],
    ids=["wrong-password", "no-password", "anonymous", "unknown-user"],
)
async def test_auth_listener_refuses_bad_credentials(mosquitto: Broker, user: str | None, password: str | None) -> None:
    client = aiomqtt.Client(mosquitto.host, mosquitto.auth_port, username=user, password=password)
    assert_not_authorized(await connect_error(client))


async def test_auth_listener_refusal_with_mqtt5(mosquitto: Broker) -> None:
    exc = await connect_error(mosquitto.client("node-a", password="wrong", protocol=aiomqtt.ProtocolVersion.V5))
    assert isinstance(exc, aiomqtt.MqttCodeError)
    assert str(exc) == "[code:135] Not authorized", str(exc)  # not 134 "Bad user name or password"


# -- TLS ------------------------------------------------------------------------------------------


async def test_tls_listener_with_the_test_ca(mosquitto: Broker, topic_prefix: str) -> None:
    status = f"{topic_prefix}/nodes/node-a/status"
    async with mosquitto.client("node-a", listener="tls") as a:
        sock = a._client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in {"TLSv1.2", "TLSv1.3"}
        assert tcp_nodelay(a)  # socket_options reach the TCP socket under TLS too
        await a.subscribe(status, qos=1)
        await a.publish(status, b"online", qos=1)
        assert (await next_message(a)).payload == b"online"


async def test_tls_listener_needs_a_password_too(mosquitto: Broker) -> None:
    assert_not_authorized(await connect_error(mosquitto.client(listener="tls")))
    assert_not_authorized(await connect_error(mosquitto.client("node-a", listener="tls", password="wrong")))


async def test_tls_refused_without_the_ca(mosquitto: Broker) -> None:
    exc = await connect_error(mosquitto.client("node-a", listener="tls", tls_context=ssl.create_default_context()))
    assert isinstance(exc, aiomqtt.MqttError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc), str(exc)


class _WrongServerName(ssl.SSLContext):
    """Verifies the broker's certificate against a name it does not carry (as connecting to the broker under
    another host name would: the listener only binds 127.0.0.1, whose name is in the certificate)."""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = "broker.invalid"
        return super().wrap_socket(*args, **kwargs)


async def test_tls_refused_on_hostname_mismatch(mosquitto: Broker) -> None:
    ctx = _WrongServerName(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(mosquitto.ca_file))
    exc = await connect_error(mosquitto.client("node-a", listener="tls", tls_context=ctx))
    assert isinstance(exc, aiomqtt.MqttError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc) and "mismatch" in str(exc), str(exc)


async def test_tls_and_plain_do_not_mix(mosquitto: Broker) -> None:
    # Plain MQTT to the TLS port: the broker closes the connection ("wrong version number") before any
    # CONNACK, and aiomqtt 2.5 ignores a disconnection before CONNACK: `async with client` waits FOREVER.
    # Whoever connects must bound the connect with a timeout (the mesh client must).
    exc = await connect_error(mosquitto.client("node-a", listener="tls", tls_context=None), timeout=1)
    assert isinstance(exc, TimeoutError)
    # TLS to the plain password port: the broker resets the connection during the handshake.
    tls_to_plain = mosquitto.client("node-a", listener="auth", tls_context=mosquitto.tls_context())
    assert isinstance(await connect_error(tls_to_plain, timeout=3), aiomqtt.MqttError)


# -- the per-node ACL (docker/mosquitto.acl) ------------------------------------------------------

ACL_LISTENERS: list[Listener] = ["auth", "tls"]


@pytest.mark.parametrize("listener", ACL_LISTENERS)
async def test_acl_a_node_publishes_only_under_its_own_topics(
    mosquitto: Broker, topic_prefix: str, listener: Listener
) -> None:
    async with (
        mosquitto.client("node-c", listener=listener) as watcher,
        mosquitto.client("node-a", listener=listener) as a,
    ):
        await watcher.subscribe(f"{topic_prefix}/#", qos=1)
        # Denied: acknowledged (PUBACK) like any QoS 1 publish, then dropped by the broker.
        await a.publish(f"{topic_prefix}/verdicts/node-b", b"forged verdict", qos=1)
        await a.publish(f"{topic_prefix}/nodes/node-b/status", b"offline", qos=1)
        await a.publish(f"{topic_prefix}/verdicts/node-a/extra", b"below own topic", qos=1)
        await a.publish(f"{topic_prefix}/other/node-a", b"not a mesh topic", qos=1)
        await a.publish(f"callshield/v2/{topic_prefix.rsplit('/', 1)[1]}/verdicts/node-a", b"other version", qos=1)
        # Allowed: its own verdict topic and its own status.
        await a.publish(f"{topic_prefix}/verdicts/node-a", b"own verdict", qos=1)
        await a.publish(f"{topic_prefix}/nodes/node-a/status", b"online", qos=1)
        got = [await next_message(watcher) for _ in range(2)]
    # One publisher, QoS 1: delivered in order, so a forged message would have come first.
    assert [(str(m.topic), m.payload) for m in got] == [
        (f"{topic_prefix}/verdicts/node-a", b"own verdict"),
        (f"{topic_prefix}/nodes/node-a/status", b"online"),
    ]


@pytest.mark.parametrize("listener", ACL_LISTENERS)
async def test_acl_every_node_reads_the_whole_mesh(mosquitto: Broker, topic_prefix: str, listener: Listener) -> None:
    async with mosquitto.client("node-b", listener=listener) as b, mosquitto.client("node-a", listener=listener) as a:
        granted = await b.subscribe(f"{topic_prefix}/verdicts/+", qos=1)
        assert list(granted) == [1]
        await a.publish(f"{topic_prefix}/verdicts/node-a", b"v", qos=1)
        m = await next_message(b)
        assert (str(m.topic), m.payload) == (f"{topic_prefix}/verdicts/node-a", b"v")


async def test_acl_reading_outside_the_mesh_gets_nothing(mosquitto: Broker, topic_prefix: str) -> None:
    async with mosquitto.client() as anonymous, mosquitto.client("node-a") as a:
        # SUBACK still grants it (Mosquitto 2.0 checks reads at delivery), but nothing outside
        # callshield/v1/ is delivered to a node.
        await a.subscribe(f"elsewhere/{topic_prefix}/#", qos=1)
        await a.subscribe(f"{topic_prefix}/verdicts/+", qos=1)
        await anonymous.publish(f"elsewhere/{topic_prefix}/x", b"hidden", qos=1)
        await anonymous.publish(f"{topic_prefix}/verdicts/node-b", b"visible", qos=1)
        m = await next_message(a)
    assert m.payload == b"visible"


async def test_acl_a_will_under_another_node_is_never_published(mosquitto: Broker, topic_prefix: str) -> None:
    # Mosquitto 2.0 accepts the connection and checks the will against the ACL when it would publish it.
    forged = aiomqtt.Will(f"{topic_prefix}/nodes/node-b/status", b"offline", qos=1, retain=True)
    async with mosquitto.client("node-c") as watcher:
        await watcher.subscribe(f"{topic_prefix}/nodes/+/status", qos=1)
        a = mosquitto.client("node-a", will=forged)
        async with a:
            drop_connection(a)
            with pytest.raises(aiomqtt.MqttError):
                await next_message(a)
        # The broker handled node-a's end before node-c's CONNECT (CONNACK awaited) and so before this
        # publish: a will, had it been published, would arrive first.
        async with mosquitto.client("node-c") as c:
            await c.publish(f"{topic_prefix}/nodes/node-c/status", b"marker", qos=1)
        m = await next_message(watcher)
    assert (str(m.topic), m.payload) == (f"{topic_prefix}/nodes/node-c/status", b"marker")


# -- retained status and the last will ------------------------------------------------------------

WILL_CLIENT = """
import asyncio, os, socket, sys
import aiomqtt

async def main() -> None:
    host, port, user, topic = sys.argv[1:5]
    will = aiomqtt.Will(topic, b"offline", qos=1, retain=True)
    async with aiomqtt.Client(host, int(port), username=user, password=os.environ["MQTT_PASSWORD"], will=will,
                              socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]) as c:
        await c.publish(topic, b"online", qos=1, retain=True)
        print("ready", flush=True)
        await asyncio.sleep(120)

asyncio.run(main())
"""


@pytest.fixture
async def cleared_status(mosquitto: Broker, topic_prefix: str) -> AsyncIterator[str]:
    """node-a's status topic; its retained message is cleared after the test."""
    topic = f"{topic_prefix}/nodes/node-a/status"
    yield topic
    async with mosquitto.client("node-a") as a:
        await a.publish(topic, b"", qos=1, retain=True)  # an empty retained message deletes it


async def test_retained_status_and_last_will_when_the_client_process_dies(
    mosquitto: Broker, cleared_status: str
) -> None:
    status = cleared_status
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WILL_CLIENT,
        mosquitto.host,
        str(mosquitto.auth_port),
        "node-a",
        status,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "MQTT_PASSWORD": mosquitto.password("node-a")},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            assert await proc.stdout.readline() == b"ready\n"
        async with mosquitto.client("node-b") as watcher:
            await watcher.subscribe(status, qos=1)
            first = await next_message(watcher)
            assert (first.payload, first.retain) == (b"online", True)  # retained: sent on subscribe
            proc.kill()  # SIGKILL: the kernel closes the socket, no MQTT DISCONNECT
            await proc.wait()
            will = await next_message(watcher)
            assert (will.payload, will.qos) == (b"offline", 1)
        async with mosquitto.client("node-c", listener="tls") as late:
            await late.subscribe(status, qos=1)
            m = await next_message(late)
            assert (m.payload, m.retain) == (b"offline", True)  # the will was retained
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_last_will_when_the_connection_is_cut(mosquitto: Broker, cleared_status: str) -> None:
    status = cleared_status
    async with mosquitto.client("node-b") as watcher:
        await watcher.subscribe(status, qos=1)
        a = mosquitto.client("node-a", will=aiomqtt.Will(status, b"offline", qos=1, retain=True))
        async with a:
            await a.publish(status, b"online", qos=1, retain=True)
            assert (await next_message(watcher)).payload == b"online"
            drop_connection(a)
            assert (await next_message(watcher)).payload == b"offline"
            with pytest.raises(aiomqtt.MqttError):
                await next_message(a)  # the client learns it lost the connection


# -- the shipped sample: docker/mosquitto.conf + docker/mosquitto.acl -----------------------------


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    assert found, "mosquitto is not installed although the broker fixture started"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def sample_broker(mosquitto: Broker, tmp_path: Path) -> Iterator[int]:
    """A second Mosquitto running docker/mosquitto.conf itself, only its paths and port rewritten (to the
    test CA, server certificate and password file of scripts/mosquitto); yields its TLS port."""
    text = (REPO_DIR / "docker" / "mosquitto.conf").read_text()
    port = _free_port()
    rewrites = {
        "/mosquitto/config/certs/": f"{mosquitto.directory}/",
        "/mosquitto/config/passwd": str(mosquitto.directory / "passwd"),
        "/mosquitto/config/mosquitto.acl": str(REPO_DIR / "docker" / "mosquitto.acl"),
        "/mosquitto/data/": f"{tmp_path}/data/",
        "\nlistener 8883\n": f"\nlistener {port} 127.0.0.1\n",
    }
    for old, new in rewrites.items():
        assert old in text, f"docker/mosquitto.conf changed shape: no {old!r} (update this test)"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text = "user root\n" + text  # as in scripts/mosquitto: the test keys are root's (the image runs as mosquitto)
    (tmp_path / "data").mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    out = tmp_path / "mosquitto.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([_mosquitto_binary(), "-c", str(conf)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"docker/mosquitto.conf did not start ({proc.returncode}):\n{out.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"docker/mosquitto.conf: no listener on {port}:\n{out.read_text()}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_the_sample_config_enforces_tls_passwords_and_the_acl(
    mosquitto: Broker, sample_broker: int, topic_prefix: str
) -> None:
    def client(user: str | None, **kwargs: Any) -> aiomqtt.Client:
        kwargs.setdefault("tls_context", mosquitto.tls_context())
        password = kwargs.pop("password", mosquitto.users.get(user or ""))
        return aiomqtt.Client(mosquitto.host, sample_broker, username=user, password=password, **kwargs)

    assert_not_authorized(await connect_error(client(None)))
    assert_not_authorized(await connect_error(client("node-a", password="wrong")))
    assert isinstance(await connect_error(client("node-a", tls_context=None), timeout=1), TimeoutError)  # no plain MQTT
    async with client("node-b") as b, client("node-a") as a:
        await b.subscribe(f"{topic_prefix}/#", qos=1)
        await a.publish(f"{topic_prefix}/verdicts/node-b", b"forged", qos=1)
        await a.publish(f"{topic_prefix}/verdicts/node-a", b"own", qos=1)
        m = await next_message(b)
    assert (str(m.topic), m.payload) == (f"{topic_prefix}/verdicts/node-a", b"own")


# -- a broker outage (stop + start, as the mesh tests of issue 4 do) ---------------------------------


async def test_retained_and_queued_messages_survive_a_broker_restart(
    mosquitto: Broker, cluster: str, topic_prefix: str, cleared_status: str
) -> None:
    verdicts = f"{topic_prefix}/verdicts/node-a"
    session = f"{cluster}-node-b"  # a persistent session (clean_session=False) of node-b
    async with mosquitto.client("node-b", identifier=session, clean_session=False) as b:
        await b.subscribe(verdicts, qos=1)
    async with mosquitto.client("node-a") as a:
        await a.publish(cleared_status, b"online", qos=1, retain=True)
        await a.publish(verdicts, b"queued for node-b", qos=1)  # node-b is away: the broker queues it
    mosquitto.stop()
    try:
        assert not mosquitto.is_running()
        exc = await connect_error(mosquitto.client("node-a"))
        assert isinstance(exc, aiomqtt.MqttError) and "Connection refused" in str(exc)
    finally:
        mosquitto.start()
    async with mosquitto.client("node-b", identifier=session, clean_session=False) as b:
        queued = await next_message(b)  # delivered on reconnection, without subscribing again
        assert (str(queued.topic), queued.payload) == (verdicts, b"queued for node-b")
        await b.subscribe(cleared_status, qos=1)
        retained = await next_message(b)
        assert (retained.payload, retained.retain) == (b"online", True)
    async with mosquitto.client("node-b", identifier=session, clean_session=True):
        pass  # drops the persistent session
