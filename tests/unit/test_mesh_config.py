"""The [mesh] configuration section: defaults, keys, validation errors that name the key."""

from __future__ import annotations

import pytest

from callshield.config import Config, parse_config
from callshield.errors import ConfigError
from callshield.mesh import Inbox, Outbound, subject_for
from tests.unit.mesh_support import CALLER, NOW

HEX = "11" * 32
HEX2 = "22" * 32


def test_mesh_is_off_by_default() -> None:
    mesh = Config().mesh
    assert not mesh.enabled and mesh.keys == () and mesh.quorum == 2 and mesh.max_message_bytes == 8192
    assert mesh.privacy_secret() is None


def test_keys_rotation_and_identity() -> None:
    config = parse_config(
        f"""
[node]
name = "pbx-1"
cluster = "acme"

[mesh]
enabled = true
privacy = true
privacy_key = "{HEX2}"
keys = [{{ id = "k2", secret = "{HEX}" }}, {{ id = "k1", secret = "{HEX2}", valid_until = 2026-01-01T00:00:00Z }}]
"""
    )
    assert config.mesh_identity() == ("acme", "pbx-1")
    ring = config.mesh.keyring()
    assert ring.current.kid == "k2" and ring.kids == ("k2", "k1")
    old = ring.key("k1")
    assert old is not None and old.valid_until == 1767225600.0
    privacy = config.mesh.privacy_secret()
    assert privacy == bytes.fromhex(HEX2)
    cluster, node = config.mesh_identity()
    sender = Outbound(keyring=ring, cluster=cluster, node=node, privacy_key=privacy)
    sealed = sender.seal(sender.revoke(CALLER, now=NOW))
    peer = Inbox(keyring=ring, cluster=cluster, node="pbx-2")
    outcome = peer.receive(sealed.topic, sealed.payload, NOW)
    assert getattr(outcome, "message").subject == subject_for(CALLER, privacy)  # noqa: B009


def test_mesh_names_override_the_node_section() -> None:
    config = parse_config('[node]\nname = "host"\ncluster = "c1"\n\n[mesh]\ncluster = "c2"\nnode = "n2"\n')
    assert config.mesh_identity() == ("c2", "n2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mesh]\nenabled = true\n", "mesh: keys: the mesh is enabled but has no signing key"),
        ("[mesh]\nnode = 'a/b'\n", "cs.toml:1: mesh: node 'a/b' contains '/'"),
        ("[mesh]\ncluster = 'a+'\n", "mesh: cluster 'a+' contains '+'"),
        ("[mesh]\nkeys = [{ id = 'k1', secret = 'abcd' }]\n", "mesh.keys[0]: the secret is 2 bytes"),
        ("[mesh]\nkeys = [{ id = 'k 1', secret = '" + HEX + "' }]\n", "mesh.keys[0]: key id 'k 1'"),
        ("[mesh]\nkeys = [{ id = 'k1' }]\n", "mesh.keys[0]: Object missing required field `secret`"),
        ("[mesh]\nkeys = [{ id = 'k1', secret = '" + HEX + "', bogus = 1 }]\n", "mesh.keys[0].bogus"),
        (
            "[mesh]\nkeys = [{ id = 'k1', secret = '" + HEX + "' }, { id = 'k1', secret = '" + HEX2 + "' }]\n",
            "mesh: keys: every key id must be different",
        ),
        (
            "[mesh]\nkeys = [{ id = 'k1', secret = '" + HEX + "', valid_until = 2026-01-01T00:00:00Z }]\n",
            "the first key ('k1') signs",
        ),
        (
            "[mesh]\nenabled = true\nprivacy = true\nkeys = [{ id = 'k1', secret = '" + HEX + "' }]\n",
            "privacy_key: privacy is on",
        ),
        ("[mesh]\nprivacy_key = '!!!'\n", "privacy_key: the secret must be written as hex or base64"),
        ("[mesh]\nport = 70000\n", "mesh: port must be between 1 and 65535"),
        ("[mesh]\npassword = 'x'\n", "password is set but username is empty"),
        ("[mesh]\ntls_ca = '/etc/ca.pem'\n", "but tls = false"),
        ("[mesh]\ntls = true\ntls_cert = 'c.pem'\n", "tls_cert and tls_key go together"),
        ("[mesh]\nmax_message_bytes = 10\n", "max_message_bytes must be between"),
        ("[mesh]\nmax_skew = 0\n", "max_skew must be positive"),
        ("[mesh]\nblock_ttl = '400d'\n", "block_ttl must be positive"),
        ("[mesh]\ntrust = 1.5\n", "trust must be between 0 and 1"),
        ("[mesh]\nquorum = 0\n", "quorum must be at least 1"),
        ("[mesh]\nreconnect_min = '1m'\nreconnect_max = '1s'\n", "reconnect_min must be positive"),
        ("[mesh]\nbogus = 1\n", "cs.toml:2: mesh.bogus: Object contains unknown field"),
        (
            "[node]\ncluster = 'x#'\n\n[mesh]\nenabled = true\nkeys = [{ id = 'k1', secret = '" + HEX + "' }]\n",
            "the mesh cluster (mesh.cluster, else node.cluster) 'x#' contains '#'",
        ),
    ],
)
def test_errors_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cs.toml")
    assert expected in str(info.value)
