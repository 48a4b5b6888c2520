"""`hubbub chat`: the terminal client. Textual is imported only when the client runs."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        default="http://127.0.0.1:8080",
        help="the server (a node or the load balancer); default http://127.0.0.1:8080",
    )
    parser.add_argument(
        "--user",
        default=os.environ.get("HUBBUB_USER"),
        help="username: prefills the log-in screen, or logs in with --password (HUBBUB_USER)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("HUBBUB_PASSWORD"),
        help="password, with --user: skips the log-in screen (HUBBUB_PASSWORD)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("HUBBUB_TOKEN"),
        help="a token from POST /api/v1/login: skips logging in (HUBBUB_TOKEN)",
    )


def main(argv: list[str]) -> int:
    """Parse `hubbub chat`'s arguments and run the client until the user quits."""
    parser = argparse.ArgumentParser(prog="hubbub chat", description="hubbub terminal client")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from hubbub.tui.app import ChatApp

    if not args.url.startswith(("http://", "https://")):
        print(f"hubbub chat: expected an http:// or https:// URL, got {args.url!r}")
        return 2
    app = ChatApp(args.url, username=args.user, password=args.password, token=args.token)
    app.run()
    return 0
