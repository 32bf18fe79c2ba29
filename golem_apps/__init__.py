"""golem_apps."""
