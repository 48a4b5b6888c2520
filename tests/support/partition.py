"""A network partition between one process and the data tier, made with the kernel's firewall.

The data tier listens on 127.0.0.1. A `Partition` picks another loopback address
(127.0.x.y) and sends every TCP connection to it on to 127.0.0.1 (an iptables DNAT rule
in the nat table's OUTPUT chain): a node given URLs with that address reaches Redis and
PostgreSQL as usual, and only it does. `cut` then drops every packet of those connections,
both ways (a filter rule matching the connections' original destination): what a pulled
cable or a partitioned switch does. Nothing is refused and nothing is closed; open
connections hang, new ones never complete; the rest of the machine is untouched. `heal`
removes the drop, and TCP carries on where it stopped.

Every rule carries a comment naming this process, and `close` (also at exit) removes them
all, so a test that fails half-way leaves no firewall behind. Needs root (CAP_NET_ADMIN)
and iptables (`make iptables`); without them a test skips, or fails when CI is set.
"""

from __future__ import annotations

import atexit
import os
import random
import subprocess
from urllib.parse import urlsplit, urlunsplit

from support.needs import executable, missing


class Partition:
    def __init__(self) -> None:
        self.iptables = executable("iptables", "make iptables installs it")
        self.address = f"127.0.{random.randrange(2, 250)}.{random.randrange(2, 250)}"
        self.tag = f"hubbub-partition-{os.getpid()}-{self.address}"
        self.is_cut = False
        self._rules: list[list[str]] = []
        try:
            self._add(
                ["-t", "nat", "-A", "OUTPUT", "-d", self.address, "-p", "tcp"],
                ["-j", "DNAT", "--to-destination", "127.0.0.1"],
            )
        except subprocess.CalledProcessError as exc:
            missing(f"iptables cannot add a rule here (root and CAP_NET_ADMIN needed): {exc}")
        atexit.register(self.close)

    def url(self, url: str) -> str:
        """`url` with its host 127.0.0.1 replaced by this partition's address."""
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1", f"not a 127.0.0.1 URL: {url}"
        netloc = parts.netloc.replace("127.0.0.1", self.address, 1)
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        """Drop every packet of the connections to the address, from now on, both ways."""
        if not self.is_cut:
            self._add(
                ["-I", "OUTPUT", "-m", "conntrack", "--ctorigdst", self.address], ["-j", "DROP"]
            )
            self.is_cut = True

    def dropped(self) -> int:
        """Packets the cut has dropped so far (0 when not cut): proof that it hit traffic."""
        if not self.is_cut:
            return 0
        listing = subprocess.run(
            [self.iptables, "-L", "OUTPUT", "-v", "-x", "-n"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for line in listing.splitlines():
            if self.tag in line and "DROP" in line:
                return int(line.split()[0])
        raise AssertionError(f"the cut's rule is gone:\n{listing}")

    def heal(self) -> None:
        if self.is_cut:
            self._delete(self._rules[-1])
            self.is_cut = False

    def close(self) -> None:
        """Remove every rule this partition added (idempotent)."""
        for rule in reversed(list(self._rules)):
            self._delete(rule)
        self.is_cut = False

    def _add(self, match: list[str], target: list[str]) -> None:
        rule = [*match, "-m", "comment", "--comment", self.tag, *target]
        self._run(rule)
        # The same rule with -D instead of -A or -I deletes it.
        self._rules.append(["-D" if arg in ("-A", "-I") else arg for arg in rule])

    def _delete(self, rule: list[str]) -> None:
        self._rules.remove(rule)
        subprocess.run([self.iptables, *rule], capture_output=True, check=False)

    def _run(self, rule: list[str]) -> None:
        subprocess.run([self.iptables, *rule], capture_output=True, check=True, timeout=30)
