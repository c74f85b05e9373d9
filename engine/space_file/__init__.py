"""The space file: read safely, parsed into frozen dataclasses; every user-facing validation error."""
