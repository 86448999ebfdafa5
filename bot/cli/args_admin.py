"""Arguments of ``meditron-bot admin``: the review console (default) and its accounts."""

from __future__ import annotations

import argparse

ROLES = ("reviewer", "admin", "clinician")  # kept in step with storage.models.ROLES (this module stays light)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """admin [--host H] [--port P] [--https] | add-user NAME --role R | disable-user NAME."""
    admin = sub.add_parser("admin", help="the review console (web) for research reviewers, and its accounts")
    admin.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    admin.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    admin.add_argument(
        "--https",
        action="store_true",
        help="the console is reached over HTTPS (reverse proxy): Secure cookies and HSTS",
    )
    admin.set_defaults(handler="admin_cmd:serve")
    actions = admin.add_subparsers(dest="admin_command", metavar="ACTION")
    add = actions.add_parser("add-user", help="create an account (asks for its password, or reads stdin)")
    add.add_argument("name", help="login name (2-64 letters, digits or . _ @ -)")
    add.add_argument(
        "--role",
        choices=ROLES,
        default="reviewer",
        help="reviewer (default), admin, or clinician (answers cases)",
    )
    add.set_defaults(handler="admin_cmd:add_user")
    disable = actions.add_parser("disable-user", help="disable an account and end its sessions")
    disable.add_argument("name")
    disable.set_defaults(handler="admin_cmd:disable_user")
