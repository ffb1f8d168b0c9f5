"""The recipe: stages, checks, training and tracking, without Prefect.

The package logs through :mod:`logging` (a logger per module under ``recipe``): stage verdicts and checks at INFO,
advice at WARNING, trial outcomes at INFO. Like any library it adds only a ``NullHandler``; the application
decides where records go (the Prefect flow sends them to the flow run's log, the CLI to its log file).
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
