"""The linear command-line splitter agrees with shlex.split and refuses what it cannot take."""

from __future__ import annotations

import contextlib
import shlex
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consensus.shell_words import MAX_LINE, WordsError, split_words

# Characters that matter to the splitter, often; anything else now and then.
_LINES = st.text(st.sampled_from(list(" \t\n'\"\\ab#$é")) | st.characters(), max_size=40)


@given(_LINES)
@example("a '' b")
@example('say "a \\"quoted\\" \\$word\\\\"')
@example("it\\'s a\\ b")
def test_words_are_those_shlex_gives(line):
    try:
        expected = shlex.split(line)
    except ValueError:
        with pytest.raises(WordsError):
            split_words(line)
        return
    assert split_words(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "a" * MAX_LINE,
        "'" + "a " * (MAX_LINE // 2 - 1) + "'",
        '"' + "\\a" * (MAX_LINE // 2 - 1) + '"',
        '"' + "a" * MAX_LINE,
        "x " * (MAX_LINE // 2),
    ],
)
def test_the_longest_line_takes_milliseconds(line):
    started = time.process_time()
    with contextlib.suppress(WordsError):
        split_words(line[:MAX_LINE])
    # shlex.split takes seconds on a word this long; the bound is for a noisy machine.
    assert time.process_time() - started < 0.5


def test_a_longer_line_is_refused_before_any_work():
    started = time.process_time()
    with pytest.raises(WordsError, match="at most 131072"):
        split_words("a" * (2 << 20))
    assert time.process_time() - started < 0.05
