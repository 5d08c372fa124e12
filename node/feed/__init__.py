"""The committed-state feed: voters serve it (`serve`), members follow it (`member`) instead
of running Raft. Its frames and the ring of recent entries are in consensus.feed_*."""
