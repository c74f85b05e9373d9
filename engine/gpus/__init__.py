"""Sharing GPUs: placement, host-wide claims, gpu_memory packing, OOM reruns and their status lines."""
