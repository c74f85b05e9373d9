"""hpotui's Textual interface (reads the study file; never imports into the engine)."""
