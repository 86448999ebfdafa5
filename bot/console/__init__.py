"""The review console: a small server-rendered web app for research reviewers and admins."""

from bot.console.app import create_app

__all__ = ["create_app"]
