"""What to try next: samplers, warm starts, objectives, boundary warnings, refine stages, the plan."""
