"""Login throttling: a bound on password guesses per address and per account.

Three counters of failed logins, each expiring `window` seconds after its first failure:

- `a:<address>`: failures from one address, whatever the accounts. At `limit`, every
  login from that address is refused (429) until the counter expires, even with the
  right password: a guesser learns nothing more from there.
- `u:<account>`: failures against one account, from any address (an attacker with many
  addresses). At `limit`, the account is closed only to addresses that have themselves
  failed on it (`p:<account>|<address>`): the owner, logging in from an address with no
  failures there, still gets in, so nobody can lock a victim out from everywhere by
  failing on purpose. A botnet then gets one guess per fresh address per window.
- `p:<account>|<address>`: failures of that pair. A successful login clears it (the
  owner's own typos are forgiven); it clears neither the address's counter (an attacker
  could log into an account of their own between guesses to reset it) nor the
  account's (the owner's logins would hand guessers a fresh allowance each time).

Unknown usernames are counted like known ones, so throttling says nothing about which
accounts exist. Refused attempts are not counted: waiting out the window always works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hubbub.engine.base import Counters
from hubbub.errors import RateLimited


@dataclass(frozen=True, slots=True)
class LoginKeys:
    address: str
    account: str
    pair: str


class LoginThrottle:
    """At most `limit` failed logins per address and per account within `window` seconds."""

    def __init__(self, counters: Counters, limit: int, window: float) -> None:
        self.counters = counters
        self.limit = limit
        self.window = window

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    @staticmethod
    def keys(username: str, address: str) -> LoginKeys:
        """The counters of a login; no name over 32 characters exists, so 64 are plenty
        (a 64 KiB "username" does not become a 64 KiB key)."""
        account = username.lower()[:64]
        return LoginKeys(f"a:{address}", f"u:{account}", f"p:{account}|{address}")

    async def check(self, keys: LoginKeys) -> None:
        """Raise RateLimited (with the seconds to wait) if this login may not be tried now."""
        if not self.enabled:
            return
        (
            (by_address, address_left),
            (by_account, account_left),
            (by_pair, _),
        ) = await self.counters.get([keys.address, keys.account, keys.pair])
        if by_address >= self.limit:
            raise RateLimited(_seconds(address_left), "too many failed logins from this address")
        if by_account >= self.limit and by_pair > 0:
            raise RateLimited(_seconds(account_left), "too many failed logins for this account")

    async def failed(self, keys: LoginKeys) -> None:
        if self.enabled:
            await self.counters.hit([keys.address, keys.account, keys.pair], self.window)

    async def succeeded(self, keys: LoginKeys) -> None:
        if self.enabled:
            await self.counters.clear(keys.pair)


def _seconds(left: float) -> int:
    """Whole seconds to wait (Retry-After takes an integer), at least 1."""
    return max(1, math.ceil(left))
