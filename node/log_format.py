"""How a node writes its own log: readable lines (the default) or one JSON object per line
(`--log-format json`), which Loki, Elasticsearch or any collector reads without a pattern.

A JSON record holds `time` (RFC 3339, UTC, milliseconds), `level`, `logger` and `message`,
and `exc` (the formatted traceback) when the record carries an exception, `stack` when it
carries a stack. Python's warnings go through logging too, so every line is an object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii keeps a line one line whatever a message holds.
        return json.dumps(entry, ensure_ascii=True)


def configure(level: str, log_format: str) -> None:
    """The root logger of a node process, writing to standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
    logging.getLogger("pysyncobj").setLevel(logging.ERROR)
