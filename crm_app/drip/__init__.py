"""The domain core: enrolment, scheduling, rendering, delivery, tracking.

Nothing in here imports Flask's request: functions take a session and plain
values and return models or results; callers commit.
"""
