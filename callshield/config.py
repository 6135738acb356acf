"""Configuration: one TOML file, validated, every setting with a working default (DESIGN contract 3).

Unknown keys are rejected; every error names the key and, where it can be found, the line.
Durations are written as numbers of seconds or as strings with a unit: ``"300ms"``, ``"90s"``,
``"5m"``, ``"24h"``, ``"30d"``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import phonenumbers

from callshield.errors import ConfigError, RuleError
from callshield.rules import RuleSpec, parse_pattern
from callshield.verdict import Mode

if TYPE_CHECKING:
    from callshield.mesh import Keyring

ENV_CONFIG = "CALLSHIELD_CONFIG"


class Seconds(float):
    """A duration in seconds; parsed from a number or a string such as ``"5m"``."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> Seconds:
    """``90`` → 90 s; ``"300ms"``, ``"5m"``, ``"24h"``, ``"30d"``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return Seconds(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return Seconds(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"expected a duration such as 30, '300ms', '5m', '24h' or '30d', got {value!r}")


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Seconds:
        return parse_duration(value)
    raise NotImplementedError


def _check_region(region: str) -> None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {region!r}: use an ISO 3166 code such as US, GB, DE")


_SOUND = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NodeConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    """Node name (default: the host name). Shown in the audit log and, later, to mesh peers."""
    cluster: str = "default"
    default_region: str = "US"
    """Region for numbers written without a country code (``00``/``011`` follow the region's rules)."""

    def __post_init__(self) -> None:
        _check_region(self.default_region)

    @property
    def node_name(self) -> str:
        return self.name or socket.gethostname() or "callshield"


class StorageConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = ""
    """SQLite database file; default ``$XDG_DATA_HOME/callshield/callshield.sqlite3``."""
    flush_interval: Seconds = Seconds(0.5)
    """How often buffered writes (audit, evidence) are committed."""
    number_cache: int = 262_144
    """Normalized numbers kept in memory."""
    reputation_cache: int = 262_144
    """Reputation blocks (/100 ranges) kept in memory."""
    audit_retention: Seconds = Seconds(90 * 86400)

    def __post_init__(self) -> None:
        if self.number_cache < 1 or self.reputation_cache < 1:
            raise ValueError("cache sizes must be at least 1")

    def database_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "callshield" / "callshield.sqlite3"


class AgiConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 4573
    header_timeout: Seconds = Seconds(2.0)
    command_timeout: Seconds = Seconds(2.0)
    decision_timeout: Seconds = Seconds(0.3)
    """Bound on the whole verdict exchange; on expiry the call is connected with reason ``timeout``."""
    max_sessions: int = 10_000
    max_line: int = 8192
    mset: bool = True
    """Set the verdict's variables with one ``EXEC MSet`` (one round trip) rather than one SET VARIABLE each."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")


class AriConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ARI Stasis application (``callshield ari``); decision_timeout is shared with ``[agi]``."""

    url: str = "http://127.0.0.1:8088"
    """Asterisk's HTTP server (http.conf); ARI is under /ari, events on ws://HOST:PORT/ari/events."""
    user: str = "callshield"
    password: str = ""
    """ARI password (ari.conf); the environment variable CALLSHIELD_ARI_PASSWORD overrides it."""
    app: str = "callshield"
    """Stasis application name, as in ``Stasis(callshield,inbound)``."""
    request_timeout: Seconds = Seconds(2.0)
    connect_timeout: Seconds = Seconds(5.0)
    reconnect_min: Seconds = Seconds(0.5)
    reconnect_max: Seconds = Seconds(30.0)
    read_presentation: bool = True
    """Read CALLERID(pres) (one extra request per call) so withheld numbers are recognised."""
    max_channels: int = 10_000
    fastagi: bool = True
    """``callshield ari`` also listens for FastAGI ([agi]): the dialplan's hangup handler reports there."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https?://[^/?#\s]+/?", self.url):
            raise ValueError(f"url must be http://HOST:PORT (no path), got {self.url!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.app):
            raise ValueError(f"app must be a plain name (letters, digits, _ . -), got {self.app!r}")
        for name in ("request_timeout", "connect_timeout", "reconnect_min", "reconnect_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        if self.max_channels < 1:
            raise ValueError("max_channels must be at least 1")


class PolicyConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Mode = Mode.ENFORCE
    screen_at: int = 50
    """Risk score (0-100) from which a call is screened."""
    block_at: int = 80
    """Risk score from which a call is blocked."""
    block_cause: int = 21
    """Q.850 cause for blocked calls (21 = call rejected)."""

    def __post_init__(self) -> None:
        if not 0 <= self.screen_at <= 101 or not 0 <= self.block_at <= 101:
            raise ValueError("screen_at and block_at must be between 0 and 101 (101 = never)")
        if self.screen_at > self.block_at:
            raise ValueError(f"screen_at ({self.screen_at}) must not be above block_at ({self.block_at})")
        if not 1 <= self.block_cause <= 127:
            raise ValueError("block_cause must be a Q.850 cause code between 1 and 127")


class ScoringConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Points each finding adds to the risk score (negative points lower it)."""

    anonymous: float = 20.0
    withheld: float = 15.0
    unavailable: float = 15.0
    invalid: float = 45.0
    """Junk, too short or too long caller IDs, and numbers that do not exist in the numbering plan."""
    premium_rate: float = 35.0
    new_number: float = 5.0
    """A number this node has never seen before."""
    neighbour: float = 8.0
    """Caller shares country, area code and exchange with the callee (neighbour spoofing)."""
    reports: float = 40.0
    """One decayed spam report; more reports add less each (logarithmic)."""
    screen_failed: float = 30.0
    peer: float = 55.0
    """Peer nodes' standing verdicts: one fully trusted peer's block (weight 1) screens; more add less each."""
    legitimate: float = -12.0
    """Each decayed answered long call or passed screening."""
    range_heat: float = 25.0
    """Several bad numbers in the caller's /100 block."""
    rate: float = 30.0
    fanout: float = 45.0
    sweep: float = 65.0
    concurrent: float = 25.0
    repeat: float = 20.0
    short_calls: float = 25.0


class ReputationConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    half_life: Seconds = Seconds(30 * 86400)
    """Evidence loses half its weight in this time."""
    long_call: Seconds = Seconds(60.0)
    """An answered call at least this long is evidence that the caller is legitimate."""
    short_call: Seconds = Seconds(6.0)
    """An answered call shorter than this counts as a short call."""
    bad_threshold: float = 1.0
    """Decayed badness from which a number counts as bad for its neighbours (range heat)."""
    range_bad_numbers: int = 3
    """Bad numbers in one /100 block from which the block heats its other numbers."""


class PatternsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    window: Seconds = Seconds(3600.0)
    """The long sliding window (calls per hour, fan-out, repeats, sweeps)."""
    max_callers: int = 500_000
    """Callers tracked in memory; the least recently seen are evicted beyond this."""
    max_events: int = 128
    """Calls remembered per caller inside the window."""
    snapshot_interval: Seconds = Seconds(60.0)
    open_call: Seconds = Seconds(300.0)
    """A call without hangup feedback counts as still open (concurrency) for this long."""
    rate_per_minute: int = 5
    rate_per_hour: int = 30
    fanout: int = 8
    """Distinct callees in the window from which fan-out counts."""
    sweep: int = 4
    """Consecutive DIDs dialed in ascending numeric order from which a sweep counts."""
    concurrent: int = 3
    repeat: int = 6
    """Calls to the same callee in the window from which repeats count."""

    def __post_init__(self) -> None:
        if self.window < 60:
            raise ValueError("window must be at least 60 seconds")
        if self.max_callers < 1 or self.max_events < 4:
            raise ValueError("max_callers must be >= 1 and max_events >= 4")


class ScreeningConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    in_session: bool = True
    """Run the challenge inside the AGI/ARI session; false leaves ``screen`` for the dialplan to run."""
    prompt: tuple[str, ...] = ("silence/1", "vm-press")
    """Asterisk sounds played before the digit (core sounds, no extension); then ``digits/<digit>``."""
    tries: int = 2
    """Attempts; a wrong digit or silence uses one."""
    digit_timeout: Seconds = Seconds(5.0)
    """Seconds to wait for a key after the prompt of each attempt."""
    max_challenges: int = 3
    """Challenges one caller gets within ``challenge_window``; past that a screen verdict blocks."""
    challenge_window: Seconds = Seconds(3600.0)
    pass_ttl: Seconds = Seconds(86400.0)
    """How long a passed screening lets the same caller reach the same callee without a new challenge."""

    def __post_init__(self) -> None:
        if not 1 <= self.tries <= 5:
            raise ValueError("tries must be 1..5")
        if not 0.5 <= self.digit_timeout <= 30:
            raise ValueError("digit_timeout must be between 0.5 and 30 seconds")
        if self.max_challenges < 1:
            raise ValueError("max_challenges must be at least 1")
        if self.challenge_window < 60:
            raise ValueError("challenge_window must be at least 60 seconds")
        for sound in self.prompt:
            if not _SOUND.fullmatch(sound):
                raise ValueError(f"prompt sound {sound!r} is not a sound name such as 'vm-press' or 'silence/1'")


class SafetyConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    emergency: bool = True
    """Always connect calls from or to the region's emergency numbers. Turning this off is refused."""
    critical: tuple[str, ...] = ()
    """Patterns of numbers whose calls (from or to) are always connected: hospitals, utilities, ..."""

    def __post_init__(self) -> None:
        if not self.emergency:
            raise ValueError("emergency numbers are always connected; this safety rail cannot be turned off")
        for pattern in self.critical:
            try:
                parse_pattern(pattern)
            except RuleError as exc:
                raise ValueError(str(exc)) from None


class NumberingConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A numbering override: calls on this trunk, or to these DIDs, use another region and/or tenant."""

    trunk: str = ""
    did: str = ""
    region: str = ""
    tenant: str = ""

    def __post_init__(self) -> None:
        if not self.trunk and not self.did:
            raise ValueError("a numbering override needs a trunk or a did pattern")
        if self.region:
            _check_region(self.region)
        if self.did:
            try:
                parse_pattern(self.did)
            except RuleError as exc:
                raise ValueError(str(exc)) from None


class MeshKeyConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One cluster signing key (``[[mesh.keys]]`` or an inline table in ``mesh.keys``)."""

    id: str
    """Key id sent with each message: 1-32 letters, digits, ``_ . -``."""
    secret: str
    """At least 32 bytes, as hex or base64 (``openssl rand -hex 32``)."""
    valid_until: datetime | None = None
    """Messages signed with this key are refused after this moment (UTC if no offset); none: no end."""

    def __post_init__(self) -> None:
        from callshield.mesh._signing import check_key_id, decode_secret  # only when a key is configured

        check_key_id(self.id)
        decode_secret(self.secret)

    def until(self) -> float | None:
        """``valid_until`` in epoch seconds."""
        if self.valid_until is None:
            return None
        when = self.valid_until if self.valid_until.tzinfo else self.valid_until.replace(tzinfo=UTC)
        return when.timestamp()


class MeshConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The MQTT reputation mesh (DESIGN contract 2); off unless ``enabled``."""

    enabled: bool = False
    cluster: str = ""
    """Cluster name in the topics; empty = ``node.cluster``."""
    node: str = ""
    """This node's name in the topics; empty = ``node.name`` (the host name)."""
    host: str = "127.0.0.1"
    """MQTT broker."""
    port: int = 1883
    username: str = ""
    password: str = ""
    """Broker password; the environment variable CALLSHIELD_MQTT_PASSWORD overrides it."""
    tls: bool = False
    """Connect with TLS (``tls_ca`` empty: the system's CA certificates)."""
    tls_ca: str = ""
    tls_cert: str = ""
    """Client certificate (with ``tls_key``) for brokers that require one."""
    tls_key: str = ""
    keepalive: Seconds = Seconds(30.0)
    reconnect_min: Seconds = Seconds(0.5)
    reconnect_max: Seconds = Seconds(30.0)
    keys: tuple[MeshKeyConfig, ...] = ()
    """Signing keys: the first signs, every one verifies until its ``valid_until``."""
    privacy: bool = False
    """Name callers by a keyed hash of their number (``privacy_key``) instead of the number."""
    privacy_key: str = ""
    """Shared by every node of the cluster; at least 32 bytes as hex or base64. Not rotated with ``keys``."""
    max_message_bytes: int = 8192
    max_skew: Seconds = Seconds(300.0)
    """Peer messages whose timestamp is further than this from our clock are refused as stale."""
    block_ttl: Seconds = Seconds(7 * 86400.0)
    """How long peers keep a block from this node in force."""
    screen_ttl: Seconds = Seconds(86400.0)
    """How long peers keep a screen, failed screening or report from this node in force."""
    trust: float = 1.0
    """Weight (0-1) of a peer node's verdicts (the nodes of one cluster are one operator's)."""
    peer_trust: dict[str, float] = {}
    """Weight per peer node name, overriding ``trust`` (e.g. 0.2 for a node you are not sure of)."""
    quorum: int = 2
    """Distinct peer nodes that must block a caller before peer evidence alone blocks it."""

    def __post_init__(self) -> None:
        self._check_names()
        self._check_broker()
        self._check_keys()
        self._check_limits()

    def _check_names(self) -> None:
        if self.cluster or self.node:
            from callshield.mesh._topics import check_name

            if self.cluster:
                check_name(self.cluster, what="cluster")
            if self.node:
                check_name(self.node, what="node")

    def _check_broker(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if self.password and not self.username:
            raise ValueError("password is set but username is empty")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if not self.tls and (self.tls_ca or self.tls_cert):
            raise ValueError("tls_ca/tls_cert/tls_key are set but tls = false")
        if not self.keepalive >= 1:
            raise ValueError("keepalive must be at least 1 second")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("reconnect_min must be positive and at most reconnect_max")

    def _check_keys(self) -> None:
        ids = [key.id for key in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("keys: every key id must be different")
        if self.keys and self.keys[0].valid_until is not None:
            raise ValueError(f"keys: the first key ({self.keys[0].id!r}) signs, so it cannot have valid_until")
        if self.privacy_key:
            from callshield.mesh._signing import decode_secret

            try:
                decode_secret(self.privacy_key)
            except ValueError as exc:
                raise ValueError(f"privacy_key: {exc}") from None
        if self.enabled and not self.keys:
            raise ValueError("keys: the mesh is enabled but has no signing key")
        if self.enabled and self.privacy and not self.privacy_key:
            raise ValueError("privacy_key: privacy is on but no privacy key is set")

    def _check_limits(self) -> None:
        if not 512 <= self.max_message_bytes <= 262_144:
            raise ValueError("max_message_bytes must be between 512 and 262144")
        if not self.max_skew > 0:
            raise ValueError("max_skew must be positive")
        for name in ("block_ttl", "screen_ttl"):
            if not 0 < getattr(self, name) <= 366 * 86400:
                raise ValueError(f"{name} must be positive and at most 366 days")
        if not 0.0 <= self.trust <= 1.0:
            raise ValueError("trust must be between 0 and 1")
        for name, weight in self.peer_trust.items():
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"peer_trust[{name!r}] must be between 0 and 1")
        if self.quorum < 1:
            raise ValueError("quorum must be at least 1")

    def keyring(self) -> Keyring:
        """The keyring of ``keys``; ValueError when there is none."""
        from callshield.mesh import Keyring, SigningKey, decode_secret

        if not self.keys:
            raise ValueError("mesh.keys: no signing key configured")
        signing = [SigningKey(kid=k.id, secret=decode_secret(k.secret), valid_until=k.until()) for k in self.keys]
        return Keyring(current=signing[0], accepted=signing[1:])

    def privacy_secret(self) -> bytes | None:
        """The privacy key's bytes in privacy mode, else None."""
        if not self.privacy:
            return None
        from callshield.mesh import decode_secret

        return decode_secret(self.privacy_key)


class ModelConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which scorer turns the feature vector into the risk score."""

    scorer: Literal["rules", "model"] = "rules"
    """``rules``: the built-in points of ``[scoring]``; ``model``: the learned model plus the rules'
    points for evidence a model does not read (reports, screenings, peers, bad ranges)."""
    path: str = ""
    """Model file (callshield-model JSON); empty: the model shipped with callshield."""
class HttpConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The admin HTTP API and dashboard (``callshield serve --http``); off unless ``listen`` is set."""

    listen: str = ""
    """``HOST:PORT`` to listen on, e.g. ``127.0.0.1:8080``; empty = off. ``serve --http`` overrides it."""
    token_file: str = ""
    """Bearer tokens, one per line (``NAME:TOKEN`` or ``TOKEN``); empty = ``http.tokens`` beside the database."""
    max_body: int = 65536
    """Largest accepted request body, in bytes."""

    def __post_init__(self) -> None:
        if self.listen:
            parse_listen(self.listen)
        if not 1024 <= self.max_body <= 16 * 1024 * 1024:
            raise ValueError("max_body must be between 1024 and 16777216 bytes")

    def token_path(self, database: Path) -> Path:
        """The token file: ``token_file``, else ``http.tokens`` in the database's directory."""
        return Path(self.token_file).expanduser() if self.token_file else database.parent / "http.tokens"


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"`` or ``"localhost:8080"`` → (host, port); ValueError otherwise."""
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})", value.strip())
    if match is None:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    port = int(match.group("port"))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    return match.group("v6") or match.group("host"), port


class LoggingConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    decisions: bool = True
    """One line per decision (at level info) with id, action, score, reasons and timing."""
    numbers: Literal["full", "masked", "none"] = "masked"
    """Phone numbers in decision lines: ``full``, ``masked`` (prefix and last two digits) or ``none``.
    The audit log in the database keeps the full number under the decision id either way."""


class MetricsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Prometheus endpoint (``/metrics``, and ``/healthz`` for health checks)."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    """``HOST:PORT`` (``[::1]:9464`` for IPv6); loopback by default: the figures describe your traffic."""

    def __post_init__(self) -> None:
        self.address()

    def address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``; ValueError when it is not ``HOST:PORT``."""
        return parse_listen(self.listen)


class Config(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration."""

    node: NodeConfig = NodeConfig()
    storage: StorageConfig = StorageConfig()
    agi: AgiConfig = AgiConfig()
    ari: AriConfig = AriConfig()
    policy: PolicyConfig = PolicyConfig()
    scoring: ScoringConfig = ScoringConfig()
    reputation: ReputationConfig = ReputationConfig()
    patterns: PatternsConfig = PatternsConfig()
    screening: ScreeningConfig = ScreeningConfig()
    safety: SafetyConfig = SafetyConfig()
    numbering: tuple[NumberingConfig, ...] = ()
    rules: tuple[RuleSpec, ...] = ()
    mesh: MeshConfig = MeshConfig()
    model: ModelConfig = ModelConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    def __post_init__(self) -> None:
        if self.mesh.enabled:
            from callshield.mesh._topics import check_name

            cluster, node = self.mesh_identity()
            check_name(cluster, what="the mesh cluster (mesh.cluster, else node.cluster)")
            check_name(node, what="the mesh node name (mesh.node, else node.name)")

    def mesh_identity(self) -> tuple[str, str]:
        """``(cluster, node)`` of this node in the mesh topics (``[mesh]`` names, else ``[node]``'s)."""
        return self.mesh.cluster or self.node.cluster, self.mesh.node or self.node.node_name


def config_from_dict(data: dict[str, Any], *, source: str = "<config>", text: str = "") -> Config:
    """Validate parsed TOML; raise :class:`ConfigError` naming the key (and the line, given ``text``)."""
    try:
        return msgspec.convert(data, type=Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(str(exc), source, text)) from None


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Parse and validate TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return config_from_dict(data, source=source, text=text)


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, else ``$CALLSHIELD_CONFIG``, else the embedded defaults."""
    chosen = path if path is not None else os.environ.get(ENV_CONFIG) or None
    if chosen is None:
        return Config()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc}") from None
    return parse_config(text, source=str(file))


# --- error locations -------------------------------------------------------------------------------

_ERROR_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<key>[^`]+)`")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def _describe(message: str, source: str, text: str) -> str:
    match = _ERROR_PATH.match(message)
    assert match is not None
    detail, raw_path = match.group("message"), match.group("path") or ""
    parts: list[str | int] = [int(i) if i else k for k, i in _PATH_PART.findall(raw_path)]
    unknown = _UNKNOWN_FIELD.search(detail)
    if unknown:
        parts.append(unknown.group("key"))
    key = _dotted(parts) or "(top level)"
    line = _locate_line(text, parts) if text else None
    where = f"{source}:{line}" if line else source
    return f"{where}: {key}: {detail}"


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_TABLE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\s]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _locate_line(text: str, parts: list[str | int]) -> int | None:
    """Line of the key ``parts`` (e.g. ``["rules", 2, "pattern"]``) in TOML ``text``, else of its table."""
    wanted = tuple(parts)
    current: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    table_line: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            name = tuple(re.sub(r"\s+", "", header.group(2)).split("."))
            if header.group(1) == "[[":
                array_counts[name] = array_counts.get(name, -1) + 1
                current = (*name, array_counts[name])
            else:
                current = name
            if current == wanted and table_line is None:
                table_line = number
            continue
        key = _KEY.match(line)
        if key and (*current, key.group(1)) == wanted:
            return number
    return table_line
