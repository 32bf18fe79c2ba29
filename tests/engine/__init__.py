"""Tests of the durable task engine."""
