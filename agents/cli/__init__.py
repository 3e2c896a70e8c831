"""``bt-miner``: the miner's command line (typer + rich).

``run`` (an agent against validators given, discovered or a --dev hub), ``demo``
(the whole system in one command), ``watch`` (live games and odds), ``submit`` (one
prediction by hand), ``record`` (a validator's stream to a file), ``backtest`` (agents
replayed on a recording or a football-data.co.uk CSV), ``status`` (outboxes and
receipts), ``agents`` (the list).
Exit codes: 0 ok, 1 runtime failure, 2 usage/configuration error, 3 permanent
refusal by a validator (403 / 4001 / 4003).
"""

from .common import EXIT_FAILURE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError
from .main import app, main

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "CliError", "app", "main"]
