"""Clients of this registry: who may get tokens, bound to which service, with which scopes and keys.

A client authenticates at ``/auth/token`` with ``private_key_jwt`` (an inline JWKS, a JWKS URL or a
public key) or, where allowed, a client secret (stored only as a salted scrypt hash). The built-in
``operator`` client stands for the local operator's ``ief-registry token``: it cannot authenticate
at the token endpoint, and disabling it revokes every operator token at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from registry import errors
from registry.auth.scopes import ADMIN, is_scope
from registry.outbound.egress import accept_url
from schemas.auth import ClientInfo
from schemas.privacy import parse_labels, parse_purpose
from schemas.types import InvalidValueError, ServiceStatus, parse_service_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from registry.auth.repository import AuthRepository, ClientRow
    from registry.db.pool import Database
    from registry.outbound.egress import AddressPolicy

__all__ = (
    "OPERATOR_CLIENT_ID",
    "ClientService",
    "KeyMaterial",
    "check_bound_service",
    "client_info",
    "hash_secret",
    "public_key_from_pem",
    "verify_secret",
)

OPERATOR_CLIENT_ID = "operator"
"""The built-in client of ``ief-registry token`` (the local operator)."""

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_SECRET_BYTES = 32


def hash_secret(secret: str) -> str:
    """A salted scrypt hash of a client secret, as stored."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a stored hash (constant-time comparison)."""
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    computed = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    return hmac.compare_digest(computed, base64.b64decode(digest))


class KeyMaterial:
    """Validation of the public key material a client registers."""

    @staticmethod
    def jwks(document: Any) -> dict[str, Any]:
        """A JWKS reduced to public RSA and EC keys.

        Raises:
            InvalidInput: not a JWKS, empty, or holding keys of another type.
        """
        try:
            key_set = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise errors.InvalidInput(f"not a usable JWKS: {exc}") from None
        keys = list(key_set)
        if not keys or not all(isinstance(key, RSAKey | ECKey) for key in keys):
            raise errors.InvalidInput("a client JWKS holds one or more RSA or EC public keys")
        return {"keys": [key.as_dict(private=False) for key in keys]}

    @staticmethod
    def public_key(pem: str) -> str:
        """A PEM public key (RSA or EC), normalised to its public half.

        Raises:
            InvalidInput: not a PEM RSA or EC key.
        """
        try:
            return public_key_from_pem(pem).as_pem(private=False).decode()
        except ValueError as exc:
            raise errors.InvalidInput(f"not a usable PEM public key: {exc}") from None


def public_key_from_pem(pem: str) -> RSAKey | ECKey:
    """An RSA or EC key from PEM (public, or private of which the public half is used).

    Raises:
        ValueError: not PEM, or another kind of key.
    """
    data = pem.encode()
    try:
        loaded: Any = serialization.load_pem_public_key(data)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, password=None).public_key()
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(str(exc)) from None
    if isinstance(loaded, rsa.RSAPublicKey):
        return RSAKey.import_key(loaded)
    if isinstance(loaded, ec.EllipticCurvePublicKey):
        return ECKey.import_key(loaded)
    raise ValueError("only RSA and EC keys are accepted")


def check_bound_service(value: str) -> str:
    """Validate the service ID a client is bound to (a UUID or a ULID), normalised.

    Raises:
        InvalidInput: not a service ID.
    """
    try:
        return parse_service_id(value)
    except InvalidValueError as exc:
        raise errors.InvalidInput(f"invalid service ID: {exc}") from None


def client_info(row: ClientRow) -> ClientInfo:
    """A client as listed: where its keys come from, never its secret or hash."""
    source = "jwks" if row.jwks is not None else row.jwks_url or ("public key" if row.public_key_pem else None)
    return ClientInfo(
        client_id=row.client_id, name=row.name, service_id=row.service_id, scopes=list(row.scopes),
        auth_method=row.auth_method, key_source=source, status=row.status, rate_per_second=row.rate_per_second,
        created_at=row.created_at, updated_at=row.updated_at, clearances=list(row.clearances),
        break_glass=row.break_glass, purposes=list(row.purposes),
    )  # fmt: skip


def check_clearances(labels: list[str]) -> list[str]:
    """Validate the security labels a client is cleared for (sorted, without repeats).

    Raises:
        InvalidInput: one is not a security label.
    """
    try:
        return list(parse_labels(labels))
    except InvalidValueError as exc:
        raise errors.InvalidInput(f"invalid clearance: {exc}") from None


def check_purposes(purposes: list[str]) -> list[str]:
    """Validate the purposes of use a client may state (sorted, without repeats).

    Raises:
        InvalidInput: one is not a v3 PurposeOfUse code.
    """
    try:
        return sorted({parse_purpose(purpose) for purpose in purposes})
    except InvalidValueError as exc:
        raise errors.InvalidInput(f"invalid purpose of use: {exc}") from None


def _check_scopes(scopes: list[str]) -> list[str]:
    cleaned = sorted({scope for scope in scopes if scope})
    if not cleaned:
        raise errors.InvalidInput("a client needs at least one scope")
    unknown = [scope for scope in cleaned if not is_scope(scope)]
    if unknown:
        raise errors.InvalidInput(
            f"unknown scope(s): {', '.join(unknown)}; use {ADMIN} or system/<Resource>.<cruds> (SMART v2 or v1)"
        )
    return cleaned


class ClientService:
    """Register, list, rotate, disable and enable clients."""

    def __init__(self, db: Database, repository: AuthRepository, *, policy: AddressPolicy) -> None:
        self._db = db
        self._repo = repository
        self._policy = policy

    def _material(
        self,
        *,
        jwks: Any | None,
        jwks_url: str | None,
        public_key_pem: str | None,
        secret: bool,
        external: bool = False,
    ) -> tuple[str, dict[str, Any] | None, str | None, str | None, str | None, str | None]:
        given = sum(1 for value in (jwks, jwks_url, public_key_pem) if value is not None) + int(secret) + int(external)
        if given != 1:
            raise errors.InvalidInput(
                "give exactly one of a JWKS, a JWKS URL, a public key, a secret, "
                "or external (its tokens come from a trusted issuer)"
            )
        if external:
            return "none", None, None, None, None, None
        if secret:
            plain = secrets.token_urlsafe(_SECRET_BYTES)
            return "client_secret", None, None, None, hash_secret(plain), plain
        return (
            "private_key_jwt",
            KeyMaterial.jwks(jwks) if jwks is not None else None,
            jwks_url,
            KeyMaterial.public_key(public_key_pem) if public_key_pem is not None else None,
            None,
            None,
        )

    async def add(
        self,
        *,
        name: str,
        service_id: str,
        scopes: list[str],
        jwks: Any | None = None,
        jwks_url: str | None = None,
        public_key_pem: str | None = None,
        secret: bool = False,
        external: bool = False,
        rate_per_second: float | None = None,
        clearances: Sequence[str] = (),
        break_glass: bool = False,
        purposes: Sequence[str] = (),
    ) -> tuple[ClientRow, str | None]:
        """Register a client; return it and, for a secret client, the secret (shown once, never stored).

        ``clearances`` are the security labels it is cleared for, ``break_glass`` lets it override a
        patient's restrictions with purpose ETREAT, ``purposes`` limit the purposes of use it may
        state (empty: any).

        An ``external`` client has no credentials here: it gets its tokens from a trusted issuer
        whose ``clients`` map names it, and this registration gives it its service and scopes.

        Raises:
            InvalidInput: a bad name, service ID, scope, key material or rate.
        """
        if not name.strip() or len(name) > 200:
            raise errors.InvalidInput("a client name is 1 to 200 characters")
        if rate_per_second is not None and rate_per_second <= 0:
            raise errors.InvalidInput("a client's rate is a positive number of requests per second")
        if jwks_url is not None:
            jwks_url = await accept_url(self._policy, jwks_url, "the JWKS URL")
        method, jwks_doc, url, pem, secret_hash, plain = self._material(
            jwks=jwks, jwks_url=jwks_url, public_key_pem=public_key_pem, secret=secret, external=external
        )
        async with self._db.writer() as conn:
            row = await self._repo.add_client(
                conn, client_id=str(uuid.uuid4()), name=name.strip(), service_id=check_bound_service(service_id),
                scopes=_check_scopes(scopes), auth_method=method, jwks=jwks_doc, jwks_url=url, public_key_pem=pem,
                secret_hash=secret_hash, rate_per_second=rate_per_second,
                clearances=check_clearances(list(clearances)), break_glass=break_glass,
                purposes=check_purposes(list(purposes)),
            )  # fmt: skip
        return row, plain

    async def update_privacy(
        self,
        client_id: str,
        *,
        clearances: list[str] | None = None,
        break_glass: bool | None = None,
        purposes: list[str] | None = None,
    ) -> ClientRow:
        """Change what a client is cleared for, whether it may break the glass, the purposes it may state
        (None: unchanged). Its tokens follow within ``auth.client_cache_seconds``.

        Raises:
            NotFound: no such client.
            InvalidInput: a label or purpose that is not one.
        """
        async with self._db.writer() as conn:
            row = await self._repo.set_client_privacy(
                conn, client_id,
                clearances=None if clearances is None else check_clearances(clearances),
                break_glass=break_glass,
                purposes=None if purposes is None else check_purposes(purposes),
            )  # fmt: skip
        if row is None:
            raise errors.NotFound(f"no client {client_id}")
        return row

    async def rotate(
        self,
        client_id: str,
        *,
        jwks: Any | None = None,
        jwks_url: str | None = None,
        public_key_pem: str | None = None,
    ) -> tuple[ClientRow, str | None]:
        """Replace a client's credentials: new key material when given, else a new secret.

        Raises:
            NotFound: no such client.
            InvalidInput: the built-in operator client, or bad key material.
        """
        if client_id == OPERATOR_CLIENT_ID:
            raise errors.InvalidInput("the operator client has no credentials; use `ief-registry token`")
        new_secret = jwks is None and jwks_url is None and public_key_pem is None
        if jwks_url is not None:
            jwks_url = await accept_url(self._policy, jwks_url, "the JWKS URL")
        method, jwks_doc, url, pem, secret_hash, plain = self._material(
            jwks=jwks, jwks_url=jwks_url, public_key_pem=public_key_pem, secret=new_secret
        )
        async with self._db.writer() as conn:
            row = await self._repo.set_client_credentials(
                conn, client_id, auth_method=method, jwks=jwks_doc, jwks_url=url, public_key_pem=pem,
                secret_hash=secret_hash,
            )  # fmt: skip
        if row is None:
            raise errors.NotFound(f"no client {client_id}")
        return row, plain

    async def get(self, client_id: str) -> ClientRow:
        """One client.

        Raises:
            NotFound: no such client.
        """
        async with self._db.reader() as conn:
            row = await self._repo.get_client(conn, client_id)
        if row is None:
            raise errors.NotFound(f"no client {client_id}")
        return row

    async def list_all(self) -> list[ClientRow]:
        """Every client."""
        async with self._db.reader() as conn:
            return await self._repo.list_clients(conn)

    async def set_status(self, client_id: str, status: ServiceStatus) -> ClientRow:
        """Enable or disable a client; a disabled client's tokens are refused within the client cache time.

        Raises:
            NotFound: no such client.
        """
        async with self._db.writer() as conn:
            row = await self._repo.set_client_status(conn, client_id, status)
        if row is None:
            raise errors.NotFound(f"no client {client_id}")
        return row

    async def ensure_operator(self, service_id: str) -> None:
        """Create the built-in operator client unless it exists."""
        async with self._db.writer() as conn:
            await self._repo.add_client_if_absent(
                conn,
                client_id=OPERATOR_CLIENT_ID,
                name="operator (ief-registry token)",
                service_id=service_id,
                scopes=[ADMIN],
            )
