"""A trial's life on this machine: folder, logs, parameters, processes, liveness, its end, stopping."""
