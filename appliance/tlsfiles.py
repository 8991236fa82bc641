"""The TLS context of an MQTT link, built from the configured files; a file that cannot be used
is a ValueError naming its config key and path (``config check`` and the daemons say so in one
line instead of an ``ssl.SSLError`` traceback)."""

from __future__ import annotations

import ssl

MIN_TLS = ssl.TLSVersion.TLSv1_2


class TlsFileError(ValueError):
    """A configured TLS file is missing or holds no usable certificate or key."""


def client_tls_context(ca_file: str | None, cert_file: str | None = None,
                       key_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ that verifies the broker's certificate and host name against ``ca_file``, with
    a client certificate where one is configured."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(f"mqtt.tls.ca_file {ca_file}: not a usable CA certificate file "
                           f"({_reason(exc)})") from exc
    context.minimum_version = MIN_TLS
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError(f"mqtt.tls.cert_file {cert_file} / key_file {key_file}: not a "
                               f"usable client certificate and key ({_reason(exc)})") from exc
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
