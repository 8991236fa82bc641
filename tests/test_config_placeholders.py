"""A host the templates in deploy/ hold as an example (broker.example.org; the store URL's
db.example.org in its comment) is refused wherever a config names a host, naming the key and
what to put there: no broker or database is ever found under a domain reserved for examples
(RFC 2606), so a daemon started so retried it for ever."""

from __future__ import annotations

import pytest

from appliance.config.loader import ConfigError, config_from_mapping


@pytest.mark.parametrize("host", ["broker.example.org", "BROKER.Example.COM.", "example.net",
                                  "mqtt.example", "broker.invalid"])
def test_a_broker_under_a_domain_reserved_for_examples_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"mqtt": {"host": host}}, environ={})
    assert (f"mqtt.host: got {host!r}, the template's example (a name reserved for examples, "
            "RFC 2606, that no host has): set the fleet broker's host name") in str(refused.value)


@pytest.mark.parametrize("url", ["postgresql://bo:s3cret@db.example.org:5432/results",
                                 "postgresql://bo@db.fleet.internal:5432,db.example.org/results",
                                 "postgresql://bo@[::1]:5433,db.example.org:5432/results"])
def test_a_store_under_a_domain_reserved_for_examples_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"store": {"url": url}}, environ={})
    said = str(refused.value)
    assert ("store.url: got 'db.example.org', the template's example (a name reserved for "
            "examples, RFC 2606, that no host has): set the PostgreSQL server's host name, or "
            "remove store.url") in said
    assert "s3cret" not in said


@pytest.mark.parametrize(("host", "url"), [
    ("notexample.org", "postgresql://bo@db.example.org.fleet.internal/results"),
    ("example.org.fleet.internal", "postgresql://bo@[::1]:5433/results"),
    ("broker.fleet.internal", "postgresql:///results?host=/run/postgresql"),
])
def test_a_host_merely_resembling_an_example_is_taken(host: str, url: str) -> None:
    config = config_from_mapping({"mqtt": {"host": host}, "store": {"url": url}}, environ={})
    assert (config.mqtt.host, config.store.url) == (host, url)
