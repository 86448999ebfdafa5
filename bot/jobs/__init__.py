"""Scheduled jobs on PTB's JobQueue."""
