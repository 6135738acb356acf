"""The ``callshield`` command line.

Exit codes (stable, for scripts): 0 success; 1 internal error (a bug: the traceback is shown);
2 usage error (bad option, number or pattern); 3 invalid configuration; 4 database problem;
5 unusable input file.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, cast

import click

from callshield import admin
from callshield.config import Config, load_config
from callshield.engine import Firewall
from callshield.errors import CallshieldError, ConfigError, ImportFormatError, RuleError, StoreError
from callshield.explain import explain, verdict_summary
from callshield.numbers import Normalizer
from callshield.replay import replay_command
from callshield.rules import RuleAction
from callshield.verdict import Call

EXIT_USAGE, EXIT_CONFIG, EXIT_DATABASE, EXIT_INPUT = 2, 3, 4, 5
_F = TypeVar("_F", bound=Callable[..., Any])


class State:
    def __init__(self, config_path: str | None, database: str | None) -> None:
        self.config_path = config_path
        self.database = database
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def database_path(self) -> Path:
        """The node database: ``--db``, else the configured one."""
        return Path(self.database) if self.database else self.config.storage.database_path()

    @contextmanager
    def firewall(self, *, external_writer: bool = True) -> Iterator[Firewall]:
        fw = Firewall.open(self.config, path=self.database, external_writer=external_writer)
        try:
            yield fw
        finally:
            fw.close()


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"callshield: error: {message}", err=True)
    sys.exit(code)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="CALLSHIELD_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (TOML). Default: $CALLSHIELD_CONFIG, else built-in defaults.",
)
@click.option("--db", "database", type=click.Path(dir_okay=False), help="Database file (overrides storage.path).")
@click.version_option(package_name="callshield")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, database: str | None) -> None:
    """callshield: a spam-call firewall for Asterisk."""
    ctx.obj = State(config_path, database)


pass_state = click.make_pass_decorator(State)


def _number_argument(state: State, raw: str) -> str:
    try:
        return admin.number_argument(state_normalizer(state), raw)
    except admin.AdminInputError as exc:
        _fail(str(exc), EXIT_USAGE)


def state_normalizer(state: State) -> Normalizer:
    return Normalizer(default_region=state.config.node.default_region, cache_size=64)


@cli.command()
@click.option("--host", default=None, help="Listen address (default: agi.host).")
@click.option("--port", type=int, default=None, help="Listen port (default: agi.port, 4573).")
@click.option(
    "--http",
    "http_listen",
    default=None,
    metavar="HOST:PORT",
    help="Also serve the admin API and dashboard here, e.g. 127.0.0.1:8080 (default: http.listen, off).",
)
@pass_state
def serve(state: State, host: str | None, port: int | None, http_listen: str | None) -> None:
    """Run the FastAGI server: Asterisk asks callshield about every inbound call."""
    from callshield.config import parse_listen
    from callshield.service import serve as run

    state.config  # noqa: B018 - validate before starting anything
    if http_listen is not None:
        try:
            parse_listen(http_listen)
        except ValueError as exc:
            _fail(f"--http: {exc}", EXIT_USAGE)
    run(state.config_path, database=state.database, host=host, port=port, http=http_listen)


@cli.command(name="ari")
@click.option("--url", default=None, help="Asterisk's HTTP server, e.g. http://127.0.0.1:8088 (default: ari.url).")
@click.option("--user", default=None, help="ARI user (default: ari.user).")
@click.option(
    "--password",
    envvar="CALLSHIELD_ARI_PASSWORD",
    default=None,
    help="ARI password (default: $CALLSHIELD_ARI_PASSWORD, else ari.password).",
)
@click.option("--app", default=None, help="Stasis application name (default: ari.app, callshield).")
@click.option(
    "--agi/--no-agi",
    "with_agi",
    default=None,
    help="Also listen for FastAGI, where the dialplan's hangup handler reports (default: ari.fastagi).",
)
@click.option("--host", default=None, help="FastAGI listen address (default: agi.host).")
@click.option("--port", type=int, default=None, help="FastAGI listen port (default: agi.port, 4573).")
@pass_state
def ari_command(
    state: State,
    url: str | None,
    user: str | None,
    password: str | None,
    app: str | None,
    with_agi: bool | None,
    host: str | None,
    port: int | None,
) -> None:
    """Run the ARI Stasis app: the dialplan's Stasis(callshield,inbound) asks callshield about each call."""
    from callshield.service import ari_settings, serve_ari

    try:
        ari_settings(state.config, url=url, user=user, password=password, app=app)  # validate before starting
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    if not (password if password is not None else state.config.ari.password):
        _fail("no ARI password: use --password, $CALLSHIELD_ARI_PASSWORD or ari.password", EXIT_USAGE)
    serve_ari(
        state.config_path,
        database=state.database,
        url=url,
        user=user,
        password=password,
        app=app,
        agi=with_agi,
        host=host,
        port=port,
    )


# --- deciding and explaining ---------------------------------------------------------------------


@cli.command()
@click.argument("number")
@click.option("--did", default="", help="The number dialed (DID), for scoped rules and patterns.")
@click.option("--trunk", default="", help="Trunk name, for numbering overrides.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def check(state: State, number: str, did: str, trunk: str, as_json: bool) -> None:
    """Decide a call from NUMBER now, without recording anything."""
    with state.firewall() as fw:
        verdict = fw.decide(Call(caller=number, callee=did, trunk=trunk), record=False)
    summary = verdict_summary(verdict)
    if as_json:
        _print_json(
            {
                "number": verdict.caller,
                **{k: summary[k] for k in ("action", "score", "reasons", "reason", "decided", "mode", "details")},
            }
        )
        return
    click.echo(
        f"{verdict.caller}: {verdict.action.value} (score {verdict.score}, reason {verdict.reason})"
        + (f" [shadow: would {verdict.decided.value}]" if verdict.action != verdict.decided else "")
    )
    for detail in summary["details"]:
        click.echo(f"  {detail['points']:+6.1f}  {detail['code']:<24} {detail['detail']}")


@cli.command(name="explain")
@click.argument("number")
@click.option("--did", default="", help="Explain a call to this DID.")
@click.option("--limit", default=20, show_default=True, help="History entries to show.")
@click.option(
    "--all",
    "all_days",
    type=float,
    default=None,
    metavar="DAYS",
    help="Also list plain low-risk connects of the last DAYS days (scans that period).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def explain_command(state: State, number: str, did: str, limit: int, all_days: float | None, as_json: bool) -> None:
    """Everything known about NUMBER, and why each verdict was given.

    Lists every notable decision (blocks, screens, connects with a risk score of 20 or more);
    plain connects are counted in the history line, and listed with --all DAYS.
    """
    since = time.time() - all_days * 86400 if all_days is not None else None
    with state.firewall() as fw:
        data = explain(fw, number, callee=did, limit=limit, all_since=since)
    if as_json:
        _print_json(data)
        return
    _print_explanation(data)


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_explanation(data: dict[str, Any]) -> None:
    num, now = data["number"], data["now"]
    click.echo(
        f"number   {num['e164'] or num['kind']}  (kind {num['kind']}, valid {num['valid']}, "
        f"type {num['number_type']}, region {num['region']})"
    )
    click.echo(f"now      {now['action']} (score {now['score']}, reason {now['reason']})")
    for d in now["details"]:
        click.echo(f"         {d['points']:+6.1f}  {d['code']:<24} {d['detail']}")
    model = data.get("model")
    if model:
        click.echo(
            f"model    {model['name']}: probability {model['probability']:.4f} -> score {model['score']} "
            f"(log-odds {model['margin']:+.2f} = bias {model['bias']:+.2f} + contributions)"
        )
        for c in model["contributions"]:
            click.echo(f"         {c['log_odds']:+6.2f}  {c['feature']:<24} = {c['value']:<10g} {c['description']}")
    for rule in data["rules"]:
        state = "active" if rule["applies_now"] else "not active now"
        click.echo(f"rule     {rule['action']} {rule['pattern']} from {rule['source']} ({state}) {rule['note']}")
    rep = data.get("reputation")
    if rep:
        click.echo(
            f"history  first seen {_ts(rep['first_seen'])}, last seen {_ts(rep['last_seen'])}, {rep['calls']} calls"
        )
        click.echo(
            f"evidence reports {rep['reports']}, screen failed {rep['screen_failed']}, passed "
            f"{rep['screen_passed']}, long calls {rep['legit_calls']}, short {rep['short_calls']}, "
            f"peer {rep['peer_bad']}; bad neighbours /10 {rep['range_bad_10']}, /100 {rep['range_bad_100']}"
        )
    for peer in data.get("peers", []):
        click.echo(
            f"peer     {peer['node']}: {peer['kind']} at {_ts(peer['at'])} until {_ts(peer['expires'])} "
            f"(trust {peer['trust']:g})"
        )
    for ev in data.get("evidence", []):
        click.echo(f"event    {_ts(ev['ts'])} {ev['kind']} x{ev['weight']:g} by {ev['source']} {ev['note']}")
    for d in data.get("decisions", []):
        outcome = d["outcome"]
        ended = f" -> {outcome['dialstatus']} {outcome['billsec']}s" if outcome and outcome["dialstatus"] else ""
        screen = f" screen {outcome['screen']}" if outcome and outcome["screen"] else ""
        click.echo(
            f"decision {_ts(d['ts'])} {d['id']} to {d['callee']}: {d['action']} score {d['score']} "
            f"({', '.join(d['reasons']) or 'clean'}){ended}{screen}"
        )


# --- lists ---------------------------------------------------------------------------------------


def _list_options(func: _F) -> _F:
    func = click.option("--note", default="", help="Why (shown by explain).")(func)
    func = click.option("--ttl", default=None, help="Expire after this long: 90m, 24h, 30d.")(func)
    func = click.option("--tenant", "tenants", multiple=True, help="Only for this tenant (repeatable).")(func)
    func = click.option("--did", "dids", multiple=True, help="Only for calls to this DID pattern (repeatable).")(func)
    return click.argument("pattern")(func)


def _pattern_argument(state: State, pattern: str) -> str:
    """Accept a national number for an exact entry; patterns must be E.164 already."""
    try:
        return admin.entry_pattern(state_normalizer(state), pattern)
    except admin.AdminInputError as exc:
        _fail(str(exc), EXIT_USAGE)


def _add_entry(
    state: State,
    action: RuleAction,
    pattern: str,
    dids: tuple[str, ...],
    tenants: tuple[str, ...],
    ttl: str | None,
    note: str,
) -> None:
    try:
        spec = admin.new_entry(
            state_normalizer(state), action, pattern, dids=dids, tenants=tenants, ttl=ttl, note=note, now=time.time()
        )
    except admin.AdminInputError as exc:
        _fail(str(exc), EXIT_USAGE)
    with state.firewall() as fw:
        entry_id = admin.add_entry(fw.lists, spec, now=time.time(), source="cli")
    scope = f" for {', '.join(spec.dids + spec.tenants)}" if spec.dids or spec.tenants else ""
    until = f" until {spec.expires:%Y-%m-%d %H:%M} UTC" if spec.expires else ""
    click.echo(f"{action.value} {spec.pattern}{scope}{until} (list:{entry_id})")


@cli.command()
@_list_options
@pass_state
def allow(
    state: State, pattern: str, dids: tuple[str, ...], tenants: tuple[str, ...], ttl: str | None, note: str
) -> None:
    """Always connect callers matching PATTERN (+14155550123, +1415555*, anonymous, ...)."""
    _add_entry(state, RuleAction.ALLOW, pattern, dids, tenants, ttl, note)


@cli.command()
@_list_options
@pass_state
def deny(
    state: State, pattern: str, dids: tuple[str, ...], tenants: tuple[str, ...], ttl: str | None, note: str
) -> None:
    """Block callers matching PATTERN."""
    _add_entry(state, RuleAction.DENY, pattern, dids, tenants, ttl, note)


@cli.command()
@click.argument("pattern")
@click.option("--did", "dids", multiple=True, help="Only the entry with exactly this DID scope.")
@pass_state
def unlist(state: State, pattern: str, dids: tuple[str, ...]) -> None:
    """Remove the allow/deny entries for PATTERN."""
    text = _pattern_argument(state, pattern)
    scope = tuple(_pattern_argument(state, d) for d in dids) if dids else None
    with state.firewall() as fw:
        removed = admin.remove_entries(fw.lists, text, dids=scope)
    if not removed:
        _fail(f"no list entry for {text}", EXIT_USAGE)
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} for {text}")
    if admin.revokes_on_mesh(text):  # an exact number: peers drop our verdicts on it
        _share(state, "revoke", text)


@cli.command(name="lists")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def lists_command(state: State, as_json: bool) -> None:
    """Show the allow/deny entries (CLI-managed and from the config file)."""
    with state.firewall() as fw:
        rows = admin.list_rows(fw)
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        scope = " ".join(row["dids"] + row["tenants"]) or "global"
        click.echo(
            f"{row['source']:<16} {row['action']:<6} {row['pattern']:<20} {scope:<20} "
            f"{row['expires'] or '':<26} {row['note']}"
        )


# --- evidence ------------------------------------------------------------------------------------


@cli.command()
@click.argument("number")
@click.option("--note", default="", help="What the call was.")
@click.option("--admin", "is_admin", is_flag=True, help="An administrator's report (weighs 3 user reports).")
@pass_state
def report(state: State, number: str, note: str, is_admin: bool) -> None:
    """Report NUMBER as spam."""
    with state.firewall() as fw:
        try:
            info = admin.report_number(fw, number, admin=is_admin, note=note, source="cli")
        except admin.AdminInputError as exc:
            _fail(str(exc), EXIT_USAGE)
    click.echo(f"reported {info.e164}")
    _share(state, "report", info.e164)


@cli.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ftc", "list"]),
    default=None,
    help="ftc (complaint CSV) or list (one number per line). Default: by file name/header.",
)
@click.option(
    "--dates",
    type=click.Choice(["row", "now"]),
    default="row",
    show_default=True,
    help="Date complaints by their row (decayed to today) or as if made now.",
)
@click.option("--region", default=None, help="Region for national numbers (default: node.default_region).")
@click.option("--force", is_flag=True, help="Import a file again even if it was imported before.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def import_command(
    state: State, file: Path, fmt: str | None, dates: str, region: str | None, force: bool, as_json: bool
) -> None:
    """Import a blocklist FILE in one transaction; bad rows are counted and skipped."""
    from tqdm import tqdm

    from callshield.importer import Format, import_file

    chosen = fmt or ("ftc" if ".csv" in file.name.lower() else "list")
    started = time.perf_counter()
    with (
        state.firewall() as fw,
        tqdm(total=file.stat().st_size, unit="B", unit_scale=True, desc="import", disable=None, file=sys.stderr) as bar,
    ):
        result = import_file(
            fw.connection,
            fw.store,
            file,
            fmt=cast("Format", chosen),
            region=region or state.config.node.default_region,
            normalizer=fw.normalizer,
            now=time.time(),
            dates=cast("Literal['row', 'now']", dates),
            force=force,
            progress=bar.update,
        )
    result.seconds = time.perf_counter() - started
    if as_json:
        _print_json(result.as_dict())
        return
    click.echo(
        f"imported {result.accepted} of {result.rows} rows ({result.numbers} numbers) from {file} "
        f"in {result.seconds:.1f} s"
    )
    for reason, count in sorted(result.rejected.items(), key=lambda kv: -kv[1]):
        click.echo(f"  rejected {count:>9}  {reason}")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "list"]), default="csv", show_default=True)
@click.option("--min-reports", default=0.0, help="Only numbers with at least this decayed report weight.")
@click.option("--output", "-o", type=click.File("w"), default="-")
@pass_state
def export(state: State, fmt: str, min_reports: float, output: Any) -> None:
    """Export reported numbers (CSV with evidence, or one number per line for `import --format list`)."""
    from callshield.importer import export_rows

    with state.firewall() as fw:
        if fmt == "csv":
            output.write("number,reports,legit_calls,screen_failed,first_seen,last_seen\n")
        for row in export_rows(fw.store, time.time(), min_reports=min_reports):
            output.write(",".join(str(v) for v in row) + "\n" if fmt == "csv" else f"{row[0]}\n")


@cli.command()
@click.option("--since", default="24h", show_default=True, help="Period: 1h, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def stats(state: State, since: str, as_json: bool) -> None:
    """Decisions by action and reason, and the size of the database."""
    with state.firewall() as fw:
        try:
            data = admin.stats(fw, since=since, now=time.time())
        except admin.AdminInputError as exc:
            _fail(str(exc), EXIT_USAGE)
    if as_json:
        _print_json(data)
        return
    click.echo(f"numbers with reputation: {data['numbers']}; allow/deny rules: {data['list_entries']}")
    click.echo(
        f"decisions in the last {since}: "
        + (", ".join(f"{k} {v}" for k, v in data["decisions"].items()) or "none")
    )
    for reason, count in data["reasons"].items():
        click.echo(f"  {count:>8}  {reason}")


@cli.command(name="try")
@click.argument("samples", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Only print mismatches.")
@pass_state
def try_command(state: State, samples: tuple[Path, ...], quiet: bool) -> None:
    """Dry-run sample calls (JSON lines with expected verdicts) on a scratch database.

    Uses --config, else a NAME.toml beside NAME.jsonl, else the defaults. Exit 1 on any mismatch.
    """
    from callshield.samples import SampleError, config_for, run_samples

    failed = total = 0
    for path in samples:
        beside = config_for(path)
        config = state.config if state.config_path or beside is None else load_config(beside)
        try:
            results = run_samples(path, config)
        except (SampleError, TypeError, ValueError) as exc:
            _fail(str(exc), EXIT_INPUT)
        for result in results:
            total += 1
            verdict = result.verdict
            assert verdict is not None
            status = "MISMATCH: " + "; ".join(result.problems) if result.problems else "ok"
            failed += bool(result.problems)
            if result.problems or not quiet:
                click.echo(
                    f"{path}:{result.line}: {verdict.caller} -> {verdict.action.value} "
                    f"(score {verdict.score}, {verdict.reason})  {status}"
                )
    click.echo(f"{total - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


# --- configuration -------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Configuration tools."""


@config.command(name="check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@pass_state
def config_check(state: State, file: str | None) -> None:
    """Validate FILE (default: --config) without starting anything."""
    path = file or state.config_path
    loaded = load_config(path)
    for warning in admin.config_warnings(loaded):
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{path or '(built-in defaults)'}: OK ({len(loaded.rules)} rules, mode {loaded.policy.mode.value}, "
        f"scorer {loaded.model.scorer}, database {loaded.storage.database_path()})"
    )


# --- admin API tokens ---------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Bearer tokens of the admin HTTP API (serve --http)."""


@token.command(name="new")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default="", help="Name shown in the audit trail (default: a short hash of the token).")
@pass_state
def token_new(state: State, file: Path | None, name: str) -> None:
    """Add a new random token to FILE (default: http.token_file, else http.tokens beside the database),
    created with mode 0600. Prints the token: give it to the API's user, it is not shown again."""
    from callshield.http import new_token, token_id

    database = Path(state.database) if state.database else state.config.storage.database_path()
    path = file or state.config.http.token_path(database)
    secret = new_token(path, name=name)
    click.echo(secret)
    click.echo(f"added token {name or token_id(secret)} to {path}", err=True)


# --- the mesh ------------------------------------------------------------------------------------

@cli.group()
def mesh() -> None:
    """The reputation mesh (MQTT)."""


@mesh.command(name="status")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def mesh_status(state: State, as_json: bool) -> None:
    """Peers, last seen, lag, messages accepted and rejected by reason, outbox depth."""
    with state.firewall() as fw:
        now = fw.clock.now()
    data = admin.mesh_status(state.config, state.database_path(), now=now)
    if as_json:
        _print_json(data)
        return
    cluster, node = state.config.mesh_identity()
    running = data["server_running"]
    state_text = "connected" if running and data.get("connected") else "not connected"
    if not running:
        state_text += " (no running server has saved a status in the last few seconds)"
    click.echo(f"mesh     {'enabled' if state.config.mesh.enabled else 'disabled'}; {cluster}/{node}, {state_text}")
    click.echo(f"outbox   {data['outbox']} waiting")
    peers = data.get("peers") if running else None
    for peer in peers if isinstance(peers, list) else []:
        click.echo(
            f"peer     {peer['node']}: last seen {_ts(peer['last_seen'])}, seq {peer['highest_seq']}, "
            f"lag {peer['lag']:.1f} s, {peer['accepted']} accepted"
        )
    received = data.get("received", {}) if running else {}
    if isinstance(received, dict) and received:
        click.echo("received " + ", ".join(f"{k} {v}" for k, v in sorted(received.items())))


def _share(state: State, kind_name: str, e164: str | None) -> None:
    """Put a report or revocation about an E.164 number in the mesh outbox (the server publishes it)."""
    if not state.config.mesh.enabled or not e164:
        return
    with state.firewall() as fw:
        now = fw.clock.now()
    seq = admin.share_event(state.config, state.database_path(), kind=kind_name, e164=e164, now=now)
    click.echo(f"queued for the mesh ({kind_name}, seq {seq})")


@cli.command()
@click.option("--listen", default=None, help="The node's metrics listener HOST:PORT (default: metrics.listen).")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for the answer.")
@pass_state
def health(state: State, listen: str | None, timeout: float) -> None:
    """Exit 0 if the running node answers /healthz on its metrics listener, 1 if not (container health checks)."""
    from callshield.metrics import check_health

    healthy, seen = check_health(listen or state.config.metrics.listen, timeout=timeout)
    click.echo(seen)
    sys.exit(0 if healthy else 1)


def main() -> None:
    """Entry point: map errors a user can fix to messages and exit codes, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except StoreError as exc:
        _fail(str(exc), EXIT_DATABASE)
    except ImportFormatError as exc:
        _fail(str(exc), EXIT_INPUT)
    except (RuleError, CallshieldError) as exc:
        _fail(str(exc), EXIT_USAGE)
    except sqlite3.Error as exc:
        _fail(f"database error: {exc}", EXIT_DATABASE)
    except BrokenPipeError:
        sys.exit(0)


# Commands with their own modules, registered after the group is built.
from callshield.model._cli import train_command  # noqa: E402
from callshield.simulate._cli import simulate_command  # noqa: E402

cli.add_command(replay_command)
cli.add_command(simulate_command)
cli.add_command(train_command)
