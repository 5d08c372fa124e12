"""A follower truncates its log only on a real conflict (Raft §5.3), not on every re-sent
AppendEntries (pure).

pysyncobj's follower deletes every entry after `prevLogIdx` whenever it holds any, then
appends the message's entries: a re-sent or late AppendEntries for entries it already has
deletes them and, when the message is shorter than the log, entries the leader already
counted toward commit (its match index never goes back). `reconcile` rewrites such a
message before pysyncobj sees it:

- entries the follower already holds with the same term are dropped from the message and
  `prevLogIdx` moves past them, so nothing that matches is deleted;
- at the first entry whose term differs (a real conflict) the message is passed on from
  there, and pysyncobj truncates exactly from the conflict;
- when every entry matched and the follower holds more, the message becomes a probe that
  pysyncobj answers with "next index = the entry after the message" (a reset), without
  deleting anything; the leader then sends what comes after, and any real conflict there
  is found the same way.

Heartbeats without entries and snapshot transfers pass unchanged: a leader sends an empty
AppendEntries only when its log ends at `prevLogIdx`, so anything after it on the follower
is not in the leader's log.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.peer_message import PeerMessage

# No entry has this term: pysyncobj answers a probe carrying it with a reset to prevLogIdx.
PROBE_TERM = -1


def reconcile(
    message: PeerMessage, last_index: int, term_at: Callable[[int], int | None]
) -> PeerMessage:
    """The message pysyncobj should handle instead of `message`. `last_index` is the
    follower's last log index, `term_at(i)` the term of its entry i (None if it has none)."""
    if (
        message.get("type") != "append_entries"
        or "prevLogIdx" not in message
        or message.get("transmission") is not None
    ):
        return message
    entries = message.get("entries") or []
    prev, prev_term = message["prevLogIdx"], message["prevLogTerm"]
    if not entries or prev >= last_index or term_at(prev) != prev_term:
        return message  # nothing to keep, or pysyncobj's own mismatch answer is right
    matched = 0
    for _command, index, term in entries:
        if index > last_index:
            break
        held = term_at(index)
        if held is None:
            return message  # compacted away: leave it to pysyncobj
        if held != term:
            break  # a real conflict: truncate from here
        matched += 1
        prev, prev_term = index, term
    if matched == 0:
        return message
    rest = entries[matched:]
    if rest or prev == last_index:
        return {**message, "prevLogIdx": prev, "prevLogTerm": prev_term, "entries": rest}
    # Every entry matched and the follower holds more: ask for what follows instead.
    return {**message, "prevLogIdx": prev + 1, "prevLogTerm": PROBE_TERM, "entries": []}
