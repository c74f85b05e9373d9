"""The pure study core: it decides, the loop (engine/study.py) does.

``StudyCore`` takes events (slots free, trial started, report, trial exited, command, tick) and
returns effects (launch, stop trial, record event, say ...). It opens no file, reads no clock
(time is passed in), starts no process and writes no database, so every decision a study makes
can be tested on a hand-built event sequence in milliseconds (tests/core/).
"""
