"""Where a credential travels: an `Authorization: Bearer …` header, or connection_init."""

from __future__ import annotations

from collections.abc import Mapping

from runwire.domain.access import Unauthenticated


def bearer_credential(headers: Mapping[str, str]) -> str:
    """The token after `Bearer`; Unauthenticated if the header is missing or another scheme."""
    header = headers.get("authorization")
    if not header:
        raise Unauthenticated("send Authorization: Bearer <token>")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("the Authorization header must be: Bearer <token>")
    return credential.strip()


_IN_CONNECTION_INIT = 'send the token in connection_init: {"Authorization": "Bearer <token>"}'


def connection_init_credential(params: object) -> str:
    """The token from a connection_init payload: `{"Authorization": "Bearer …"}` or `{"token"}`."""
    if not isinstance(params, dict):
        raise Unauthenticated(_IN_CONNECTION_INIT)
    lowered = {str(key).lower(): value for key, value in params.items()}
    token = lowered.get("token")
    if isinstance(token, str):
        return token
    header = lowered.get("authorization")
    if isinstance(header, str):
        return bearer_credential({"authorization": header})
    raise Unauthenticated(_IN_CONNECTION_INIT)
