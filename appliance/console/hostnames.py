"""Which host a request names: the console answers only under its own names (DNS rebinding).

A browser sends the name of the site it believes it talks to as the request's ``Host``. A web
page whose owner points its own name at 127.0.0.1 once the page has loaded (DNS rebinding)
has the browser send its scripts' requests to whatever listens there, under the page's name:
a console on loopback would then be reached by any web page that its host's users (or an SSH
tunnel's) visit. Such a request names the page's host, so the console answers only requests
that name it by an IP address (typed by someone, never a page's own name), ``localhost``, the
name ``console.bind`` gives, or a name in ``console.server_names`` (the public name a reverse
proxy passes on); a request without ``Host`` (HTTP/1.0, no browser sends one) is answered too.
"""

from __future__ import annotations

import ipaddress

from appliance.logsafe import shorten

LOOPBACK_NAME = "localhost"


def named_host(host_header: str) -> str:
    """The host name or address of a ``Host`` header, without its port and brackets, in lower
    case and without a final dot."""
    host = host_header.strip()
    if host.startswith("["):  # an IPv6 address: [::1]:8080
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.lower().removesuffix(".")


def own_names(bind: str, server_names: list[str]) -> frozenset[str]:
    """The host names a console bound to ``bind`` answers to besides addresses and localhost:
    ``server_names`` and the name it is bound to (when that is a name)."""
    return frozenset([*server_names, named_host(bind)])


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_refusal(host_header: str | None, names: frozenset[str]) -> str | None:
    """Why a request naming ``host_header`` is not answered, or None when it names this
    console (an address, localhost, one of its ``names``: ``own_names``) or nothing."""
    if host_header is None:
        return None
    host = named_host(host_header)
    if _is_address(host) or host == LOOPBACK_NAME or host in names:
        return None
    return (f"this console answers to its IP addresses, {LOOPBACK_NAME}, console.bind and "
            f"the names in console.server_names, not to {shorten(host, 120)} (a web page's own "
            "name pointed at this host is refused: DNS rebinding); if the console is served "
            "under that name, add it to console.server_names")
