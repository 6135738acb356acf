"""Mix presets and TOML mix files: overrides apply, bad files fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from callshield.errors import ConfigError
from callshield.simulate import DEFAULTS, FAMILIES, PRESETS, MixError, load_mix
from callshield.simulate._mix import PROFILES
from callshield.simulate._time import HOURLY


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mix.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_presets_are_complete_and_differ() -> None:
    assert {"default", "spoof-heavy", "snowshoe-heavy", "quiet"} <= set(PRESETS)
    default = load_mix("default")
    assert set(default.families) == set(FAMILIES) == set(DEFAULTS)
    for name in PRESETS:
        mix = load_mix(name)
        assert mix.name == name
        assert all(set(mix.families[family]) == set(DEFAULTS[family]) for family in FAMILIES)
        if name != "default":
            assert mix.to_dict() != default.to_dict()


def test_every_profile_has_an_hourly_shape() -> None:
    assert set(PROFILES) == set(HOURLY)
    for hourly, weekend in HOURLY.values():
        assert len(hourly) == 24 and min(hourly) >= 0 and weekend > 0


def test_toml_file_overrides_a_base_preset(tmp_path: Path) -> None:
    mix = load_mix(
        write(
            tmp_path,
            'base = "quiet"\nname = "mine"\n[families.robocall]\ncampaigns = 12\nanswer = 0.2\n'
            "[families.wangiri]\nenabled = false\n",
        )
    )
    assert mix.name == "mine"
    assert mix.param("robocall", "campaigns") == 12 and mix.param("robocall", "answer") == 0.2
    assert mix.param("wangiri", "enabled") is False
    assert mix.param("sweep", "pace_seconds") == load_mix("quiet").param("sweep", "pace_seconds")


def test_integer_values_are_accepted_for_float_parameters(tmp_path: Path) -> None:
    mix = load_mix(write(tmp_path, "[families.personal]\ncalls_per_hour = 900\n"))
    assert mix.param("personal", "calls_per_hour") == 900.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[families.robocal]\ncampaigns = 1\n", "unknown family 'robocal'"),
        ("[families.robocall]\ncampains = 1\n", "families.robocall.campains: unknown parameter"),
        ('[families.robocall]\ncampaigns = "many"\n', "families.robocall.campaigns: expected a number"),
        ("[families.robocall]\ncampaigns = 1.5\n", "expected an integer"),
        ("[families.robocall]\nanswer = 1.5\n", "a probability must be between 0 and 1"),
        ("[families.robocall]\nanswer = 0.9\nbusy = 0.2\n", "answer + busy + failed"),
        ("[families.robocall]\ncalls_per_hour = -1\n", "must be >= 0"),
        ("[families.robocall]\nenabled = 1\n", "expected true or false"),
        ('[families.robocall]\nprofile = "always"\n', "expected one of personal"),
        ("[families.robocall]\nring_min = 30\n", "ring_min > ring_max"),
        ("[families.personal]\nbillsec_max = 100000\n", "more than 86400"),
        ('base = "loud"\n', "base must be one of"),
        ("colour = 1\n", "unknown top-level key(s) colour"),
        ("families = 3\n", "[families] must be a table"),
        ("[families\n", "invalid TOML"),
    ],
)
def test_bad_mix_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MixError) as caught:
        load_mix(write(tmp_path, text))
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # the CLI maps it to exit code 3


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(MixError, match="unknown mix 'loud'"):
        load_mix("loud")
    with pytest.raises(MixError, match="cannot read mix file"):
        load_mix("/nonexistent/mix.toml")


def test_lazy_exports_resolve_and_the_cli_import_stays_light() -> None:
    import subprocess
    import sys

    import callshield.simulate as package

    assert set(package.__all__) <= set(dir(package))
    for name in package.__all__:
        assert getattr(package, name) is not None
    code = "import sys, callshield.cli; print('numpy' in sys.modules, 'callshield.simulate._generate' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
