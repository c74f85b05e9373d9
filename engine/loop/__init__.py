"""The loop shell's parts (StudyLoop stays in study.py): signals, output, launches, exits, recovery, clocks."""
