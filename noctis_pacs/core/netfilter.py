"""Address allow and deny lists (CIDR), one rule for HTTP and DIMSE.

A peer is admitted when it is in no ``deny`` network and, if ``allow`` is
not empty, in one of the ``allow`` networks.  IPv4 peers seen through an
IPv6 socket (``::ffff:10.0.0.1``) are matched as IPv4.  An address that does
not parse is refused whenever any list is set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs)


def parse_address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """Whether a listen address only accepts local connections."""
    if host.strip().lower() == "localhost":
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback


@dataclass(frozen=True)
class AddressFilter:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def from_lists(cls, allow: Iterable[str], deny: Iterable[str]) -> AddressFilter:
        return cls(_networks(allow), _networks(deny))

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def admits(self, address: str) -> bool:
        if not self.active:
            return True
        parsed = parse_address(address)
        if parsed is None:
            return False
        if any(parsed in network for network in self.deny):
            return False
        return not self.allow or any(parsed in network for network in self.allow)
