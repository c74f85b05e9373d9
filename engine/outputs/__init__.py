"""What a study tells the world: export and status text, and the notify: command."""
