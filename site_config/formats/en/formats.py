"""Dates and times in Django's own rendering (the admin): the app's rules, from batches/formats.py,
in place of English's "Dec. 2, 2026, 11:04 p.m."."""

from batches.formats import DATE, DATETIME, TIME

DATE_FORMAT = DATE
DATETIME_FORMAT = DATETIME
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = f"Y-m-d {TIME}"
# A bare time of day has no zone to name.
TIME_FORMAT = "H:i"
