"""Split a command line into words as a POSIX shell (and `shlex.split`) does, in linear time.

`shlex.split` builds each word a character at a time and takes quadratic time on one long
word (600 KB: about 8 s), which a request must never cost. This scanner takes a quoted run,
an escape or a run of plain characters per step, and refuses a line longer than Linux takes
for one argument (MAX_ARG_STRLEN) before it starts.
"""

from __future__ import annotations

import re

# Linux's limit on a single argument or environment string, in bytes (MAX_ARG_STRLEN).
MAX_LINE = 128 * 1024
_PART = re.compile(
    r"""'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)|([^ \t\r\n'"\\]+)|([ \t\r\n]+)""", re.DOTALL
)
_IN_DOUBLE_QUOTES = re.compile(r"""\\([\\"])""")


class WordsError(ValueError):
    pass


def split_words(line: str) -> list[str]:
    """The words of `line`: blanks separate them, single quotes keep everything, double
    quotes keep all but `\\"` and `\\\\`, a backslash outside quotes escapes any character."""
    if len(line) > MAX_LINE:
        raise WordsError(
            f"is {len(line)} characters long; a command line may have at most {MAX_LINE}"
        )
    words: list[str] = []
    parts: list[str] | None = None
    pos = 0
    while pos < len(line):
        match = _PART.match(line, pos)
        if match is None:
            raise WordsError(
                "has no closing quotation"
                if line[pos] in "'\""
                else "ends with a backslash that escapes nothing"
            )
        single, double, escaped, plain, blank = match.groups()
        pos = match.end()
        if blank is not None:
            if parts is not None:
                words.append("".join(parts))
                parts = None
            continue
        if parts is None:
            parts = []
        if single is not None:
            parts.append(single)
        elif double is not None:
            parts.append(_IN_DOUBLE_QUOTES.sub(r"\1", double))
        else:
            parts.append(escaped if escaped is not None else plain)
    if parts is not None:
        words.append("".join(parts))
    return words
