"""Code that runs inside the user's trial, not the engine: the report line and torch health."""
