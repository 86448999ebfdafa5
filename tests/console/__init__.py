"""Tests of the review console, on data the real bot produced."""
