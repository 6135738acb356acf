"""Configuration: defaults, validation errors that name key and line, durations, example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from callshield.config import Config, load_config, parse_config, parse_duration
from callshield.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_no_file_means_working_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLSHIELD_CONFIG", raising=False)
    config = load_config(None)
    assert config == Config()
    assert (config.agi.host, config.agi.port, config.node.default_region) == ("127.0.0.1", 4573, "US")
    assert config.policy.mode.value == "enforce"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[policy]\nscreen_at = 90\nblock_at = 80\n",
            "cs.toml:1: policy: screen_at (90) must not be above block_at",
        ),
        (
            "[node]\nname = 'a'\n\n[policy]\nbogus = 1\n",
            "cs.toml:5: policy.bogus: Object contains unknown field",
        ),
        ("[agi]\nport = 'x'\n", "cs.toml:2: agi.port: Expected `int`, got `str`"),
        ("[reputation]\nhalf_life = '3 weeks'\n", "cs.toml:2: reputation.half_life: expected a duration"),
        (
            "[[rules]]\naction = 'deny'\npattern = '+1*'\n\n[[rules]]\naction = 'allow'\npattern = '4155550123'\n",
            "cs.toml:5: rules[1]: pattern '4155550123': write numbers in E.164 form",
        ),
        (
            "[[rules]]\naction = 'block'\npattern = '+1*'\n",
            "cs.toml:2: rules[0].action: Invalid enum value 'block'",
        ),
        ("[node]\ndefault_region = 'XX'\n", "cs.toml:1: node: unknown region 'XX'"),
        ("[safety]\nemergency = false\n", "cannot be turned off"),
        ("[policy]\nmode = 'monitor'\n", "policy.mode"),
        ("x = [", "cs.toml: not valid TOML"),
        ("surprise = 1\n", "cs.toml:1: surprise: Object contains unknown field"),
        (
            "[[numbering]]\nregion = 'GB'\n",
            "numbering[0]: a numbering override needs a trunk or a did pattern",
        ),
    ],
)
def test_errors_name_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cs.toml")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("300ms", 0.3),
        ("90s", 90.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("30d", 2592000.0),
        ("45", 45.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, "ten", True, "5 weeks", None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(binary)


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = REPO / "callshield.example.toml"
    config = load_config(example)
    text = example.read_text()
    for section_name in Config.__struct_fields__:
        section = getattr(config, section_name)
        assert f"[{section_name}]" in text or f"[[{section_name}]]" in text, section_name
        if hasattr(section, "__struct_fields__"):
            for key in section.__struct_fields__:
                assert f"{key} =" in text, f"{section_name}.{key} is not documented in callshield.example.toml"
