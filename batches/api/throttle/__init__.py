"""Failures counted per client address in a fixed window, in the database.

Why the database and not axes or a cache: the counts must hold across web server processes (a
per-process memory cache would let each process grant the full allowance), and the zero-setup
default has no Redis. django-axes keeps login failures in the database too, but it sums every
failure from an address whatever it was for, so bad API tokens would lock the address out of the
login page (and a forgotten script with a revoked token would lock out the whole office). A
table of our own gives the API its own, more generous, allowance with one indexed read per
bearer request.
"""
