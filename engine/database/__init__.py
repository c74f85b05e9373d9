"""The study file: the only SQL (writes and reads), its identity, and the records both sides share."""
