"""callshield: a spam-call firewall for Asterisk PBXs.

The public API is what this module exports; everything else is internal and may change.
"""

from callshield.clock import Clock, ManualClock, SystemClock
from callshield.config import Config, load_config, parse_config
from callshield.engine import Firewall
from callshield.errors import CallshieldError, ConfigError, ImportFormatError, RuleError, StoreError
from callshield.numbers import Normalizer, NumberInfo, NumberKind
from callshield.verdict import Action, Call, CallOutcome, Mode, Reason, ScreenResult, Verdict

__all__ = [
    "Action",
    "Call",
    "CallOutcome",
    "CallshieldError",
    "Clock",
    "Config",
    "ConfigError",
    "Firewall",
    "ImportFormatError",
    "ManualClock",
    "Mode",
    "Normalizer",
    "NumberInfo",
    "NumberKind",
    "Reason",
    "RuleError",
    "ScreenResult",
    "StoreError",
    "SystemClock",
    "Verdict",
    "load_config",
    "parse_config",
]
