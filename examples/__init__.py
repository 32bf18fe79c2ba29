"""Example golem_apps apps; run one with ``python -m golem_apps.run examples.<name>``."""
