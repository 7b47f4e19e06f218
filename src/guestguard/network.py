"""The client's address: the socket peer, or what a trusted reverse proxy
says it forwarded for. A forged X-Forwarded-For from anyone else changes
nothing."""
from __future__ import annotations

import ipaddress


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request) -> str:
    peer = request.remote_addr or ""
    networks = request.registry.settings["app.trusted_proxies"]
    if not _trusted(_address(peer), networks):
        return peer
    # Walk back from the hop nearest to us: the first address no trusted proxy
    # vouches for is the client. Anything left of it could be forged.
    hops = [hop for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer
        if not _trusted(address, networks):
            return str(address)
    return str(_address(hops[0])) if hops else peer


def includeme(config) -> None:
    config.add_request_method(client_ip, "client_ip", reify=True)
