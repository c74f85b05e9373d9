"""A trial's output turned into reports: the @hpotui line, log tails, metric files, what went unread."""
