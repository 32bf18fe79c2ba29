"""Tests of golem_apps.testing."""
