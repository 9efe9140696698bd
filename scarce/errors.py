"""Error types every layer raises (the bottom of the import graph: imports nothing of scarce).

The CLI prints these as one ``scarce: error: ...`` line (exit 2): their messages name the key
or file and the fix.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and the fix."""
