"""The client's address: the peer, or what a trusted load balancer says in X-Forwarded-For.

Behind HAProxy every peer address is the proxy's, so throttling by peer would throttle
everyone at once. But X-Forwarded-For is a header anyone can send: it is believed only
when the peer is a configured proxy (`--trusted-proxies`), and then only as far as the
chain of trusted proxies goes. Each proxy appends the address it saw, so the list is
read from the right: the first entry that is not itself a trusted proxy is the client
(entries left of it were written by the client and prove nothing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(spec: str) -> tuple[Network, ...]:
    """`--trusted-proxies`: comma-separated addresses or CIDR networks; ValueError if bad."""
    networks = []
    for item in spec.split(","):
        item = item.strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"--trusted-proxies: {item!r} is no address or network") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        return cls(parse_proxies(spec))

    def trusted(self, address: str) -> bool:
        found = _address(address)
        return found is not None and any(found in net for net in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address, given the peer's and every X-Forwarded-For header's value."""
        peer = peer or ""
        if not self.networks or not self.trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            found = _address(hop)
            if found is None:
                return peer  # a garbled chain: the last trusted proxy is all we know
            if not any(found in net for net in self.networks):
                return str(found)
        return peer if not hops else str(_address(hops[0]) or peer)
