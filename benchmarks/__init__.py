"""Performance benchmarks of hpotui against the tools users would pick instead (issue 8)."""
