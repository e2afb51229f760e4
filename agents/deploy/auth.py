"""Who may call the decision service: registered clients, their hashed secrets, and signed expiring tokens.

- Clients live in a JSON file: `{"clients": {ID: {"secret_hash": ARGON2, "scopes": [...]}}}`. Only the argon2
  hash of a secret is stored; `add_client` generates the secret and returns it once (the CLI prints it once).
  The service re-reads the file when it changes, so a client added or removed counts without a restart, and a
  removed client's tokens stop working at once.
- Tokens are JWTs signed with HS256 (`iss`, `sub` = client id, `scope`, `iat`, `exp`). The signing key comes
  from an environment variable or a key file, generated with mode 0600 if missing; it is never logged.
- Scopes: `decide` (decisions) and `admin` (bundle reload); either reads the model, the schema and the metrics.

    python -m agents.deploy.auth add-client --clients FILE --id ID --scopes decide [admin]
    python -m agents.deploy.auth remove-client --clients FILE --id ID
    python -m agents.deploy.auth list-clients --clients FILE
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from twin.config import SpecError

SCOPES = ("decide", "admin")
ISSUER = "supplychain-twin"
ALGORITHM = "HS256"
MIN_KEY_BYTES = 32           # HS256 wants a key at least as long as its hash (RFC 7518, section 3.2)
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RELOAD_CHECK_SECONDS = 1.0   # how often the clients file's modification time is looked at

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the client id is unknown, so an unknown id takes as long as a wrong secret."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AuthError(Exception):
    """A request refused for its token: `status` 401 (who are you?) or 403 (not allowed); `code` the RFC 6750
    error (invalid_token, insufficient_scope; None when no token was sent), `scope` the scope needed."""

    def __init__(self, status: int, message: str, *, code: str | None = None, scope: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.scope = status, message, code, scope


@dataclass(frozen=True)
class Client:
    """A registered client: its id, the argon2 hash of its secret, the scopes it may ask for."""

    id: str
    secret_hash: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """The caller of a request, as its token says: client id and granted scopes."""

    client_id: str
    scopes: frozenset[str]


# ------------------------------------------------------------------ the clients file


def _check_scopes(scopes: Sequence[str], where: str) -> tuple[str, ...]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise SpecError(f"{where}: {bad[0] if bad else 'none'!r} is not a scope; allowed: one or more of "
                        f"{', '.join(SCOPES)}")
    return tuple(dict.fromkeys(scopes))


def read_clients(path: str | Path) -> dict[str, Client]:
    """The clients of a clients file, checked (SpecError naming the file and the entry)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such clients file; create it with `python -m agents.deploy.auth add-client "
                        f"--clients {path} --id ID --scopes decide`") from None
    except (OSError, ValueError) as error:
        raise SpecError(f"{path}: not a readable JSON clients file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("clients"), dict):
        raise SpecError(f'{path}: expected {{"clients": {{ID: {{"secret_hash": ..., "scopes": [...]}}}}}}')
    clients = {}
    for cid, entry in data["clients"].items():
        where = f"{path}: clients.{cid}"
        if not CLIENT_ID.fullmatch(cid):
            raise SpecError(f"{where}: not a client id; allowed: letters, digits, '.', '_', '-' (1-64)")
        if not isinstance(entry, dict) or not isinstance(entry.get("secret_hash"), str) \
                or not entry["secret_hash"].startswith("$argon2") or not isinstance(entry.get("scopes"), list):
            raise SpecError(f"{where}: expected secret_hash (an argon2 hash) and scopes (a list)")
        clients[cid] = Client(cid, entry["secret_hash"], _check_scopes(entry["scopes"], f"{where}.scopes"))
    return clients


def _write_clients(path: Path, clients: dict[str, Client]) -> None:
    data = {"clients": {c.id: {"secret_hash": c.secret_hash, "scopes": list(c.scopes)} for c in clients.values()}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # a service reading the file sees the old one or the new one, never half of it


def add_client(path: str | Path, client_id: str, scopes: Sequence[str]) -> str:
    """Register `client_id` with `scopes` in the clients file (created if missing) and return its new secret.

    The secret is shown only here: the file keeps its argon2 hash. An existing id gets a new secret (rotation).
    """
    path = Path(path)
    if not CLIENT_ID.fullmatch(client_id):
        raise SpecError(f"--id: {client_id!r} is not allowed; allowed: letters, digits, '.', '_', '-' (1-64)")
    scopes = _check_scopes(scopes, "--scopes")
    clients = read_clients(path) if path.exists() else {}
    secret = secrets.token_urlsafe(32)
    clients[client_id] = Client(client_id, _hasher.hash(secret), scopes)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_clients(path, clients)
    return secret


def remove_client(path: str | Path, client_id: str) -> None:
    """Remove a client from the clients file; its tokens stop working once the service sees the file."""
    path = Path(path)
    clients = read_clients(path)
    if clients.pop(client_id, None) is None:
        raise SpecError(f"--id: no client {client_id!r} in {path}; registered: {', '.join(sorted(clients))}")
    _write_clients(path, clients)


class ClientStore:
    """The clients file as the service sees it: re-read (at most once a second) when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = self.path.stat().st_mtime_ns if self.path.exists() else None
        self._clients = read_clients(self.path)
        self._checked = time.monotonic()

    def get(self, client_id: str) -> Client | None:
        """The client registered as `client_id`, if any (a file that became unreadable keeps the last one)."""
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            with self._lock:
                self._checked = now
                try:
                    mtime = self.path.stat().st_mtime_ns
                    if mtime != self._mtime:
                        self._clients, self._mtime = read_clients(self.path), mtime
                except (OSError, SpecError):
                    pass  # a file being replaced or broken by hand: keep serving the clients last read
        return self._clients.get(client_id)

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if `secret` is its secret, else None (argon2 compares in constant time; an unknown id
        costs one hash too, so its answer takes as long)."""
        client = self.get(client_id)
        try:
            _hasher.verify(client.secret_hash if client else _dummy_hash(), secret)
        except (VerificationError, InvalidHashError):
            return None
        return client


# ------------------------------------------------------------------ the signing key


def signing_key(env_var: str | None, key_file: str | Path | None) -> bytes:
    """The token signing key: the environment variable `env_var` if it is set, else the key file (generated
    with mode 0600 if missing; one readable by group or others is refused). SpecError if neither is usable."""
    if env_var and os.environ.get(env_var):
        key = os.environ[env_var].encode()
        if len(key) < MIN_KEY_BYTES:
            raise SpecError(f"{env_var}: the signing key is {len(key)} bytes; allowed: at least {MIN_KEY_BYTES}")
        return key
    if key_file is None:
        raise SpecError(f"key_file: required when the environment variable {env_var or '(none)'} is not set")
    path = Path(key_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of several processes starting at once, one writes the key and the others read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    except FileExistsError:
        pass
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(f"key_file: {path} is readable by others (mode {stat.S_IMODE(mode):o}); allowed: 0600 "
                        f"(chmod 600 {path})")
    for _ in range(50):  # another process may have created the file and not written it yet
        key = path.read_bytes().strip()
        if key:
            break
        time.sleep(0.01)
    if len(key) < MIN_KEY_BYTES:
        raise SpecError(f"key_file: the key in {path} is {len(key)} bytes; allowed: at least {MIN_KEY_BYTES}")
    return key


# ------------------------------------------------------------------ tokens


class TokenIssuer:
    """Issues and verifies the service's bearer tokens (HS256 JWTs with `exp`, `iat`, `sub` and `scope`)."""

    VERIFIED_KEPT = 4096  # tokens whose signature was checked, kept (until they expire) so the next request
                          # with one skips the HMAC and JSON decoding; past this many the memory starts again

    def __init__(self, key: bytes, lifetime_seconds: int) -> None:
        self._key, self.lifetime = key, int(lifetime_seconds)
        self._verified: dict[str, dict] = {}  # token -> its claims, for tokens checked before

    def issue(self, client_id: str, scopes: Sequence[str], now: float | None = None) -> str:
        """A token for `client_id` with `scopes`, valid for the lifetime from `now` (default: the clock)."""
        now = int(time.time() if now is None else now)
        claims = {"iss": ISSUER, "sub": client_id, "scope": " ".join(scopes), "iat": now, "exp": now + self.lifetime}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, clients: ClientStore) -> Principal:
        """The caller a token names; AuthError 401 for a token that is malformed, badly signed or expired, or
        whose client is no longer registered. Granted scopes still held by the client only."""
        claims = self._verified.get(token)
        if claims is None or claims["exp"] <= time.time():  # new, or expired since: decoded (and refused) again
            claims = self._decode(token)
        client = clients.get(str(claims["sub"]))
        if client is None:
            raise AuthError(401, "the token's client is no longer registered", code="invalid_token")
        granted = str(claims.get("scope", "")).split()
        return Principal(client.id, frozenset(s for s in granted if s in client.scopes))

    def _decode(self, token: str) -> dict:
        """The claims of a token whose signature, issuer and times check out (AuthError 401 otherwise)."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "iss"]})
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "the token has expired; ask /v1/token for a new one", code="invalid_token") from None
        except jwt.InvalidTokenError:
            raise AuthError(401, "the token is not valid (malformed or badly signed)", code="invalid_token") from None
        if len(self._verified) >= self.VERIFIED_KEPT:
            self._verified.clear()
        self._verified[token] = claims
        return claims


def require(principal: Principal, *any_of: str) -> None:
    """AuthError 403 unless the caller holds one of the scopes `any_of`."""
    if not principal.scopes.intersection(any_of):
        raise AuthError(403, f"this needs the scope {' or '.join(repr(s) for s in any_of)}; the token grants: "
                             f"{' '.join(sorted(principal.scopes)) or '(none)'}", code="insufficient_scope",
                        scope=" ".join(any_of))


def grant(client: Client, requested: str | None) -> tuple[str, ...]:
    """The scopes to grant for a token request: the requested ones (space-separated; all of the client's if
    none are named). ValueError naming a scope the client may not have."""
    if not requested or not requested.strip():
        return client.scopes
    wanted = tuple(dict.fromkeys(requested.split()))
    denied = [s for s in wanted if s not in client.scopes]
    if denied:
        raise ValueError(f"scope {denied[0]!r} is not allowed for this client; allowed: {' '.join(client.scopes)}")
    return wanted


# ------------------------------------------------------------------ the CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`add-client` (prints the new secret once), `remove-client`, `list-clients`."""
    parser = argparse.ArgumentParser(prog="python -m agents.deploy.auth", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add-client", help="register a client (or give it a new secret); prints the secret")
    add.add_argument("--clients", required=True, help="the clients file (created if missing)")
    add.add_argument("--id", required=True, help="the client id")
    add.add_argument("--scopes", nargs="+", default=["decide"], choices=SCOPES, help="scopes it may ask for")
    remove = commands.add_parser("remove-client", help="remove a client")
    remove.add_argument("--clients", required=True)
    remove.add_argument("--id", required=True)
    listing = commands.add_parser("list-clients", help="client ids and scopes (never secrets)")
    listing.add_argument("--clients", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "add-client":
            secret = add_client(args.clients, args.id, args.scopes)
            print(f"client_id: {args.id}\nclient_secret: {secret}\n(shown once; the file keeps only its hash)")
        elif args.command == "remove-client":
            remove_client(args.clients, args.id)
        else:
            for client in read_clients(args.clients).values():
                print(f"{client.id}\t{' '.join(client.scopes)}")
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
