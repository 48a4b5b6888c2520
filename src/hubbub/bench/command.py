"""`hubbub bench URL [SCENARIO ...]`: load any hubbub server (or a Socket.IO one) and measure it.

The load runs in worker processes; the parent shows progress, then prints a
summary table and says when the client side was the bottleneck. `--json`
keeps every figure, `--plot` draws them (matplotlib: `pip install 'hubbub[bench]'`).
The flags and their checks are in `bench.flags`; this module runs the plan they make.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from typing import Any

from hubbub import __version__
from hubbub.bench import accounts, suite
from hubbub.bench.flags import Plan, UsageError, add_arguments, plan_from
from hubbub.bench.loadgen import raise_nofile_limit
from hubbub.bench.remote import Observed

__all__ = ["add_arguments", "main", "run"]  # what `hubbub` (ops/cli.py) calls


def run(args: argparse.Namespace) -> int:
    """The `bench` subcommand: 0 when every scenario ran, 1 when one failed, 2 for bad usage,
    130 when interrupted (Ctrl-C)."""
    from rich.console import Console

    from hubbub.bench.output import display, plot, summary, warnings

    err, out = Console(stderr=True, highlight=False), Console(highlight=False)
    try:
        plan = plan_from(args)
    except UsageError as exc:
        err.print(f"hubbub bench: {exc}", markup=False, soft_wrap=True)
        return 2
    raise_nofile_limit()
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, suite.Outcome] = {}
    created = accounts.Created()
    stopped = 0  # the exit code of a run that ended early
    try:
        with display(err, args.quiet, args.stall_seconds) as shown:
            try:
                tokens = _tokens(args, plan, shown, created)
            except (accounts.AccountError, OSError) as exc:
                err.print(f"hubbub bench: accounts: {exc}", markup=False, soft_wrap=True)
                stopped = 1
            else:
                _scenarios(plan, args.server_pid, tokens, shown, results, outcomes)
    except KeyboardInterrupt:
        err.print("hubbub bench: interrupted", markup=False)
        stopped = 130
    cleaned = _cleanup(args, plan, created)
    if cleaned:
        err.print(cleaned, markup=False, soft_wrap=True)
    if stopped:
        return stopped
    out.print(summary(results))
    notes = warnings(results)
    for note in notes:
        out.print(f"WARNING {note}", markup=False, soft_wrap=True, style="yellow")
    if args.json is not None:
        write_json(args, plan, started, results, notes, created, cleaned)
        out.print(f"JSON: {args.json}", markup=False)
    if args.plot is not None and outcomes:
        for path in plot(args.plot, outcomes):
            out.print(f"plot: {path}", markup=False)
    return 1 if any("failed" in r for r in results.values()) else 0


def _scenarios(
    plan: Plan,
    server_pid: int | None,
    tokens: list[str],
    display: suite.Display,
    results: dict[str, dict[str, Any]],
    outcomes: dict[str, suite.Outcome],
) -> None:
    """Run every scenario of the plan, filling `results` and `outcomes` as each ends."""
    server = Observed(plan.target, server_pid)
    for name in plan.scenarios:
        begun = time.monotonic()
        try:
            outcome = suite.SCENARIOS[name](server, tokens, plan.settings, display)
        except Exception as exc:  # reported, and the other scenarios still run
            results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
            display.note(f"[red]{name} failed:[/red] {exc}")
            continue
        outcome.figures["seconds"] = round(time.monotonic() - begun, 1)
        results[name], outcomes[name] = outcome.figures, outcome


def _cleanup(args: argparse.Namespace, plan: Plan, created: accounts.Created) -> str:
    """Delete what the run created, unless --no-cleanup; the line that says what became
    of it ("" when the run needed no accounts)."""
    if plan.accounts != "api":
        return ""
    if not plan.cleanup:
        if not created:
            return "kept (--no-cleanup): this run created no rooms or accounts"
        return f"kept (--no-cleanup): the {created.describe()} this run created"
    if not created:
        return "cleanup: nothing to remove (this run created no rooms or accounts)"
    removal = accounts.remove(
        plan.target.base,
        accounts.user_names(plan.user_prefix, args.users),
        args.password,
        created,
        context=plan.target.endpoint.ssl_context(),
    )
    return removal.report(created)


def write_json(
    args: argparse.Namespace,
    plan: Plan,
    started: datetime.datetime,
    results: dict[str, dict[str, Any]],
    notes: list[str],
    created: accounts.Created,
    cleaned: str,
) -> None:
    names = accounts.user_names(plan.user_prefix, args.users)
    report = {
        "hubbub": __version__,
        "url": args.url,
        "base": plan.target.base,
        "websocket": plan.target.endpoint.path,
        "dialect": args.dialect,
        "accounts": plan.accounts,
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": dataclasses.asdict(plan.settings)
        | {"users": args.users, "user_prefix": plan.user_prefix, "cleanup": plan.cleanup},
        "created": {
            "rooms": sorted(created.rooms),
            "accounts": [names[u] for u in sorted(created.users)],
        },
        "cleanup": cleaned,
        "results": results,
        "warnings": notes,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))


def _tokens(
    args: argparse.Namespace, plan: Plan, display: suite.Display, created: accounts.Created
) -> list[str]:
    """The token of every user, by index: from the API, or the names themselves. What the
    setup creates on the server is recorded in `created` as it goes."""
    names = accounts.user_names(plan.user_prefix, args.users)
    if plan.accounts == "names":
        return names
    planned = [spec for n in plan.scenarios for spec in suite.plan(n, plan.settings, len(names))]
    rooms = accounts.memberships((int(spec.token), spec.room) for spec in planned)
    display.start(
        f"accounts: {len(names)} users, {len(rooms)} rooms",
        len(names) + len(rooms),
        "users and rooms set up",
        "the server's answers to registrations, logins, room creations and joins",
    )
    return accounts.api_tokens(
        plan.target.base,
        names,
        args.password,
        rooms,
        context=plan.target.endpoint.ssl_context(),
        progress=lambda n: display.advance(max(n, 1)),
        answered=display.answered,
        created=created,
    )


def main(argv: list[str] | None = None) -> int:
    """`hubbub bench ...` (argv without `bench`)."""
    parser = argparse.ArgumentParser(prog="hubbub bench")
    add_arguments(parser)
    return run(parser.parse_intermixed_args(argv))


if __name__ == "__main__":
    sys.exit(main())
