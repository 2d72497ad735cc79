"""HTTP digest authentication for SIP (RFC 2617, RFC 7616): answer a 401/407, or check one."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


class DigestError(ValueError):
    """A challenge or credentials header this module cannot use."""


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """The scheme and the `key=value` (or `key="value"`) parameters of an auth header."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    index = 0
    while index < len(rest):
        while index < len(rest) and rest[index] in " ,\t":
            index += 1
        equals = rest.find("=", index)
        if equals < 0:
            break
        key = rest[index:equals].strip().lower()
        index = equals + 1
        if index < len(rest) and rest[index] == '"':
            end = index + 1
            while end < len(rest) and rest[end] != '"':
                end += 2 if rest[end] == "\\" else 1
            params[key] = rest[index + 1 : end].replace('\\"', '"')
            index = end + 1
        else:
            end = rest.find(",", index)
            end = len(rest) if end < 0 else end
            params[key] = rest[index:end].strip()
            index = end
    return scheme, params


def parse_challenge(value: str) -> Challenge:
    scheme, params = parse_params(value)
    if scheme.lower() != "digest" or "nonce" not in params:
        raise DigestError(f"not a digest challenge: {value[:60]!r}")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm.removesuffix("-SESS") not in _HASHES:
        raise DigestError(f"unsupported digest algorithm {algorithm}")
    qop = tuple(part.strip() for part in params.get("qop", "").split(",") if part.strip())
    return Challenge(params.get("realm", ""), params["nonce"], algorithm, qop, params.get("opaque"))


def _hash(algorithm: str, text: str) -> str:
    return _HASHES[algorithm.upper().removesuffix("-SESS")](text.encode()).hexdigest()


def _response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str,
    cnonce: str,
) -> str:
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge`."""
    qop = "auth" if "auth" in challenge.qop else None
    if challenge.qop and qop is None:
        raise DigestError(f"unsupported qop {challenge.qop}")
    cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    digest = _response(
        challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
        f'response="{digest}"',
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


def challenge_header(realm: str, nonce: str | None = None) -> tuple[Challenge, str]:
    """A fresh MD5 qop=auth challenge and its WWW-Authenticate value (for our UAS)."""
    challenge = Challenge(realm, nonce or secrets.token_hex(16), "MD5", ("auth",))
    return (
        challenge,
        f'Digest realm="{realm}", nonce="{challenge.nonce}", qop="auth", algorithm=MD5',
    )


def verify(value: str, *, method: str, password_of: dict[str, str], nonces: set[str]) -> bool:
    """Whether an Authorization value answers one of our `nonces` with a known password."""
    try:
        scheme, params = parse_params(value)
    except ValueError:
        return False
    username = params.get("username", "")
    if scheme.lower() != "digest" or params.get("nonce") not in nonces:
        return False
    if username not in password_of:
        return False
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper().removesuffix("-SESS") not in _HASHES:
        return False
    expected = _response(
        algorithm,
        username=username,
        realm=params.get("realm", ""),
        password=password_of[username],
        method=method,
        uri=params.get("uri", ""),
        nonce=params["nonce"],
        qop=params.get("qop"),
        nc=params.get("nc", ""),
        cnonce=params.get("cnonce", ""),
    )
    return secrets.compare_digest(expected, params.get("response", ""))
