"""Raft (pysyncobj) and the pure replicated cluster-state machine.

Importing the package registers every command type and state table.
"""

from consensus import audit as _audit  # noqa: F401  (registers the audit trail of API writes)
from consensus import crons as _crons  # noqa: F401  (registers cron jobs: their table and commands)
from consensus import gossip_keys as _gossip_keys  # noqa: F401  (registers the gossip keyring: its table and commands)
from consensus import job_runs as _job_runs  # noqa: F401  (registers the job end and expiry commands)
from consensus import metrics as _metrics  # noqa: F401  (registers load reports and their table)
from consensus import networks as _networks  # noqa: F401  (registers overlay network commands and table)
from consensus import nodes as _nodes  # noqa: F401  (registers node commands and table)
from consensus import round_wire as _round_wire  # noqa: F401  (the compact form of scheduling rounds)
from consensus import scaling as _scaling  # noqa: F401  (registers the autoscaler's command)
from consensus import secrets as _secrets  # noqa: F401  (registers secret and config commands and tables)
from consensus import selectors as _selectors  # noqa: F401  (registers Kubernetes Services kept without workloads)
from consensus import tasks as _tasks  # noqa: F401  (registers service and task commands and tables)
from consensus import tokens as _tokens  # noqa: F401  (registers API tokens: their table and commands)
from consensus import updates as _updates  # noqa: F401  (registers rollback and rollout commands)
