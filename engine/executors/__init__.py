"""Executors beyond the local one (:mod:`engine.executors.local`): each runs trials somewhere else behind the same interface.

The loop is typed against :class:`engine.executors.base.Executor` (the contract, with the
capabilities it reads) and otherwise only reads the trial's stdout/stderr files, so an executor
that keeps those files filled on the head node needs no change anywhere else. Importing this package imports
no executor: each one pulls its optional dependency (Ray ...) only when it is chosen.
"""
