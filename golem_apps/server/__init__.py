"""The two servers: the long-lived requestor and the one-shot provider.

Import :mod:`golem_apps.server.provider`-side names without pulling in the
engine: this package's ``__init__`` imports nothing itself.
"""
