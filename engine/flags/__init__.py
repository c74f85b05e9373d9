"""Trial health: metric reports in, flags out; pure detectors, no I/O."""
