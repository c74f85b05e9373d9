"""Early-stopping schedulers: each answers CONTINUE or STOP for every reported result."""

from .base import Action, Decision, Scheduler
from .factory import make_scheduler

__all__ = ["Action", "Decision", "Scheduler", "make_scheduler"]
