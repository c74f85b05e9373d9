"""What the box has and what each trial uses: NVML and psutil readings, NA instead of exceptions."""
