"""docker/ and the systemd unit: no Docker engine runs here, so the files are checked for what can be
checked without one: the compose file's structure, every file it and the Dockerfiles reference, ports and
names consistent across the compose file, the node configs, Mosquitto's config and ACL, and the Asterisk
dialplan; docker/setup.sh run for real (certificates, password file, node configs that load); the unit
verified by systemd-analyze where it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from callshield.config import load_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not (shutil.which("openssl") and shutil.which("mosquitto_passwd")):
        pytest.skip("docker/setup.sh needs openssl and mosquitto_passwd")
    out = tmp_path_factory.mktemp("secrets")
    run = subprocess.run(
        [str(DOCKER / "setup.sh")],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "CALLSHIELD_SECRETS": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    yield out


def host_path(source: str, secrets: Path) -> Path:
    """A bind mount's host side: ./secrets/... from setup.sh's output, anything else from docker/."""
    relative = Path(source)
    if relative.parts[:2] == (".", "secrets") or relative.parts[0] == "secrets":
        return secrets.joinpath(*relative.parts[relative.parts.index("secrets") + 1 :])
    return (DOCKER / relative).resolve()


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: container path -> host path as written."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            out[target] = source
    return out


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port)."""
    out = {}
    for port in service.get("ports", []):
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            out[int(parts[2])] = (parts[0], int(parts[1]))
    return out


def test_the_compose_services_and_their_build_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mosquitto", "node-a", "node-b", "asterisk"}
    for name in ("node-a", "node-b", "asterisk"):
        build = services[name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from=" not in line:
                for source in line.split()[1:-1]:
                    matches = list(context.glob(source))
                    assert matches, f"{dockerfile.name}: COPY {source} matches nothing"
    for name in NODES:
        node = services[name]
        assert node["read_only"] is True and node["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in node["security_opt"]
        assert node["environment"]["CALLSHIELD_CONFIG"] == "/etc/callshield/callshield.toml"
        for address, _ in published(node).values():
            assert address == "127.0.0.1", f"{name} publishes beyond the host's loopback"


def test_the_callshield_image_is_non_root_with_a_health_check() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER callshield$", final, re.M)
    healthcheck = re.search(r"^HEALTHCHECK .* CMD (\[.*\])$", final, re.M)
    assert healthcheck and '"callshield", "health"' in healthcheck.group(1)
    assert not re.search(r"^RUN .*\b(curl|wget)\b", text, re.M)  # the health check needs no extra tool
    health = subprocess.run(
        [sys.executable, "-m", "callshield", "health", "--help"], capture_output=True, text=True, timeout=60
    )
    assert health.returncode == 0 and "/healthz" in health.stdout


def test_setup_makes_every_mounted_file_and_configs_that_load(compose: dict[str, Any], secrets: Path) -> None:
    for name, service in compose["services"].items():
        for target, source in mounts(service).items():
            assert host_path(source, secrets).exists(), f"{name}: {source} (for {target}) is not made"
        for env_file in service.get("env_file", []):
            env = host_path(env_file, secrets).read_text()
            assert re.fullmatch(r"CALLSHIELD_MQTT_PASSWORD=[0-9a-f]{48}\n", env)
    configs = {name: load_config(secrets / f"{name}.toml") for name in NODES}
    a, b = configs["node-a"], configs["node-b"]
    assert a.mesh.keys == b.mesh.keys and len(a.mesh.keys) == 1
    assert a.mesh_identity()[0] == b.mesh_identity()[0]  # one cluster
    passwd_users = {line.split(":")[0] for line in (secrets / "passwd").read_text().splitlines()}
    assert passwd_users == set(NODES)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(secrets / "certs/ca.crt"), str(secrets / "certs/server.crt")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    san = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(secrets / "certs/server.crt")],
        capture_output=True,
        text=True,
    ).stdout
    assert "DNS:mosquitto" in san
    again = subprocess.run(
        [str(DOCKER / "setup.sh")],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "CALLSHIELD_SECRETS": str(secrets)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and load_config(secrets / "node-a.toml").mesh.keys == a.mesh.keys  # kept


def test_ports_names_and_paths_agree(compose: dict[str, Any], secrets: Path) -> None:
    services = compose["services"]
    broker = (DOCKER / "mosquitto.conf").read_text()
    listener = int(re.search(r"^listener (\d+)$", broker, re.M).group(1))  # type: ignore[union-attr]
    assert "\nacl_file /mosquitto/config/mosquitto.acl" in broker
    assert mounts(services["mosquitto"])["/mosquitto/config/mosquitto.acl"] == "./mosquitto.acl"
    acl = (DOCKER / "mosquitto.acl").read_text()
    for name in NODES:
        config = load_config(secrets / f"{name}.toml")
        node = services[name]
        assert config.mesh.enabled and config.mesh.host == "mosquitto" and config.mesh.port == listener
        assert config.mesh.tls and config.mesh.tls_ca in mounts(node)
        assert mounts(node)[config.mesh.tls_ca] == "./secrets/certs/ca.crt"
        _, node_name = config.mesh_identity()
        assert node_name == config.mesh.username == name  # the ACL's %u is the node's topic name
        assert "pattern write callshield/v1/+/verdicts/%u" in acl
        assert config.agi.host == "0.0.0.0" and config.agi.port in published(node)
        metrics_host, metrics_port = config.metrics.address()
        assert metrics_host == "0.0.0.0" and metrics_port in published(node)
        assert mounts(node)["/etc/callshield/callshield.toml"] == f"./secrets/{name}.toml"
        assert str(config.storage.database_path()).startswith("/var/lib/callshield/")
        assert any(v.endswith(":/var/lib/callshield") for v in node["volumes"])
    agi = load_config(secrets / "node-a.toml").agi
    args = services["asterisk"]["build"]["args"]
    assert args["CALLSHIELD_AGI"] == f"node-a:{agi.port}"
    host_ports = [p for service in services.values() for p in published(service).values()]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"


def test_the_asterisk_image_edits_lines_that_exist() -> None:
    dockerfile = (DOCKER / "asterisk" / "Dockerfile").read_text()
    extensions = (REPO / "asterisk_conf" / "extensions.conf").read_text()
    trunk = (REPO / "asterisk_conf" / "pjsip_callshield.conf").read_text()
    assert re.search(r"^CALLSHIELD_AGI=", extensions, re.M) and "s|^CALLSHIELD_AGI=.*|" in dockerfile
    assert re.search(r"^bind=127\.0\.0\.1:5060$", trunk, re.M) and "bind=0.0.0.0:5060" in dockerfile
    assert re.search(r"^match=127\.0\.0\.1$", trunk, re.M) and "match=${TRUNK_MATCH}" in dockerfile
    assert "#include pjsip_callshield.conf" in (DOCKER / "asterisk" / "pjsip.conf").read_text()
    rtp = (DOCKER / "asterisk" / "rtp.conf").read_text()
    start, end = (int(re.search(rf"^{k} = (\d+)$", rtp, re.M).group(1)) for k in ("rtpstart", "rtpend"))  # type: ignore[union-attr]
    assert f"EXPOSE 5060/udp {start}-{end}/udp" in dockerfile


def test_the_rtp_range_is_published(compose: dict[str, Any]) -> None:
    rtp = (DOCKER / "asterisk" / "rtp.conf").read_text()
    start, end = (int(re.search(rf"^{k} = (\d+)$", rtp, re.M).group(1)) for k in ("rtpstart", "rtpend"))  # type: ignore[union-attr]
    assert f"{start}-{end}:{start}-{end}/udp" in compose["services"]["asterisk"]["ports"]
    assert "5060:5060/udp" in compose["services"]["asterisk"]["ports"]


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (DOCKER / "callshield.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["StateDirectory"] == ["callshield"] and unit["Restart"] == ["on-failure"]
    assert unit["DynamicUser"] == ["yes"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictNamespaces"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]  # AF_UNIX: sd_notify
    assert "@system-service" in unit["SystemCallFilter"]
    assert " serve" in unit["ExecStart"][0]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this environment's callshield.
    installed = Path(sys.executable).parent / "callshield"
    if not installed.exists():
        pytest.skip("no callshield script beside the interpreter")
    text = (DOCKER / "callshield.service").read_text().replace("/opt/callshield/bin/callshield", str(installed))
    (tmp_path / "callshield.service").write_text(text)
    run = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "callshield.service")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path, secrets: Path) -> None:
    # docker-compose 1.x (the one Debian 12 packages) predates the top-level `name`; Compose v2 takes it.
    text = (DOCKER / "compose.yaml").read_text()
    assert text.count("\nname: callshield\n") == 1 and text.count("context: ..\n") == 2
    # A copy of docker/ with setup.sh's output as its secrets/ (a checkout has none) and the build context
    # made absolute.
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy, ignore=shutil.ignore_patterns("secrets"))
    (copy / "secrets").symlink_to(secrets)
    (copy / "compose.yaml").write_text(
        text.replace("\nname: callshield\n", "\n").replace("context: ..\n", f"context: {REPO}\n")
    )
    run = subprocess.run(
        ["docker-compose", "-f", str(copy / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()), reason="no mosquitto")
def test_the_broker_takes_setup_secrets_with_the_shipped_config(tmp_path: Path, secrets: Path) -> None:
    """docker/mosquitto.conf as the compose service mounts it (paths mapped to here, a free port): node-a
    connects over TLS to the name in the certificate with its password; a wrong password is refused."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (DOCKER / "mosquitto.conf").read_text()
    config = config.replace("/mosquitto/config/certs/", f"{secrets}/certs/")
    config = config.replace("/mosquitto/config/passwd", f"{secrets}/passwd")
    config = config.replace("/mosquitto/config/mosquitto.acl", str(DOCKER / "mosquitto.acl"))
    config = config.replace("/mosquitto/data/", f"{tmp_path}/")
    config = re.sub(r"^listener 8883$", f"listener {port} 127.0.0.1", config, flags=re.M)
    assert not re.search(r"^[^#]*/mosquitto/", config, re.M)
    if os.geteuid() == 0:  # as root, mosquitto switches to its own user, who cannot read pytest's 0700 dirs
        config += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(config)
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and broker.poll() is None, "mosquitto did not start"
                time.sleep(0.05)
        password = (secrets / "node-a.env").read_text().strip().split("=", 1)[1]

        def publish(user: str, secret: str, topic: str) -> int:
            args = ["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(secrets / "certs/ca.crt")]
            args += ["-u", user, "-P", secret, "-q", "1", "-t", topic, "-m", "x"]
            return subprocess.run(args, capture_output=True, timeout=20).returncode

        if not shutil.which("mosquitto_pub"):
            pytest.skip("no mosquitto_pub")
        assert publish("node-a", password, "callshield/v1/demo/verdicts/node-a") == 0
        assert publish("node-a", password + "x", "callshield/v1/demo/verdicts/node-a") != 0
    finally:
        broker.terminate()
        broker.wait(timeout=10)
