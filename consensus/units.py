"""Human units for service specs: CPU (`0.5`, `100m`), memory (`128Mi`, `64M`), durations (`1m30s`).

Each parser takes the user's value and the dotted field it came from, and raises a
`WireError` naming that field when the value does not parse. Docker and Kubernetes read
`64M` differently (Docker: 64 MiB; Kubernetes: 64,000,000 bytes), so memory parsing takes
the convention of the file it reads: the API and Compose use Docker's, Kubernetes its own.
"""

from __future__ import annotations

import re

from consensus.wire import WireError, checked_int, finite_float

_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_KUBE = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DOCKER_MEMORY = re.compile(_NUMBER + r"\s*(?:([bkmgtp])i?b?)?", re.IGNORECASE)
_KUBE_MEMORY = re.compile(_NUMBER + r"(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _plain_number(value: object, field: str) -> float | None:
    """The value when it is a plain int or float (not a bool), checked to be finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return finite_float(value, field)


def parse_cpu(value: object, field: str) -> int:
    """CPU in millicores from cores (`0.5`, `2`) or millicores (`"100m"`)."""
    number = _plain_number(value, field)
    if number is None:
        if not isinstance(value, str):
            raise WireError(
                field, f"must be cores like 0.5 or millicores like '100m', not {value!r}"
            )
        text = value.strip()
        match = re.fullmatch(_NUMBER + r"(m?)", text)
        if match is None:
            raise WireError(
                field,
                f"cannot read {value!r} as CPU: use cores like '0.5' or millicores like '100m'",
            )
        number = finite_float(float(match.group(1)), field) / (1000.0 if match.group(2) else 1.0)
    if number < 0:
        raise WireError(field, f"must not be negative, got {value!r}")
    return checked_int(round(number * 1000), field)


def parse_memory(value: object, field: str, *, kubernetes: bool = False) -> int:
    """Memory in bytes from an integer or a string with a unit (`128Mi`, `64M`, `1G`, `512k`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise WireError(field, f"must not be negative, got {value}")
        return checked_int(value, field)
    if not isinstance(value, str):
        raise WireError(field, f"must be bytes or a size like '128Mi', not {value!r}")
    text = value.strip()
    if kubernetes:
        match = _KUBE_MEMORY.fullmatch(text)
        scale = _KUBE[match.group(2) or ""] if match else 0
    else:
        match = _DOCKER_MEMORY.fullmatch(text)
        scale = _BINARY[(match.group(2) or "").lower()] if match else 0
    if match is None:
        units = "Ki, Mi, Gi, k, M, G" if kubernetes else "b, k, m, g; binary, as Docker reads them"
        raise WireError(
            field, f"cannot read {value!r} as memory: use bytes or a number with a unit ({units})"
        )
    return checked_int(round(finite_float(float(match.group(1)) * scale, field)), field)


def parse_duration(value: object, field: str) -> float:
    """Seconds from a number or a Go-style duration string (`10s`, `1m30s`, `500ms`)."""
    number = _plain_number(value, field)
    if number is None:
        if not isinstance(value, str):
            raise WireError(field, f"must be seconds or a duration like '10s', not {value!r}")
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            if re.fullmatch(_NUMBER, text):
                return finite_float(float(text), field)
            raise WireError(
                field,
                f"cannot read {value!r} as a duration: use seconds or e.g. '10s', '1m30s', '500ms'",
            )
        number = finite_float(sum(float(n) * _DURATION_UNITS[u] for n, u in parts), field)
    if number < 0:
        raise WireError(field, f"must not be negative, got {value!r}")
    return number
