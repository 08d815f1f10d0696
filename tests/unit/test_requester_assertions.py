"""IEF-Requester assertions are JWS that a JOSE library (joserfc) verifies, whatever the signature's numbers."""

from __future__ import annotations

from dataclasses import dataclass

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from registry.auth.assertions import LIFETIME, TYPE, RequesterAssertions
from registry.auth.requester import Requester
from tests.factories import make_hpii, make_ihi


@dataclass
class _Keys:
    requester: ECKey


class _Ring:
    """A key ring holding one requester key (what ``KeyRing.fresh`` answers)."""

    def __init__(self, key: ECKey) -> None:
        self.keys = _Keys(key)

    async def fresh(self) -> _Keys:
        return self.keys


async def test_every_assertion_verifies_with_joserfc_and_carries_the_claims() -> None:
    """Hundreds of assertions (short r and s included, by chance) verify; header and claims are as documented."""
    key = ECKey.generate_key("P-256", private=True, parameters={"alg": "ES256", "kid": "k1"})
    public = KeySet([ECKey.import_key(key.as_dict(private=False))])
    signer = RequesterAssertions(_Ring(key), issuer="https://registry.example")  # type: ignore[arg-type]
    hpii, ihi = make_hpii(), make_ihi()
    requester = Requester(client_id="ehr", service_id="svc", purpose="TREAT", practitioner=hpii)
    seen = set()
    for _ in range(300):
        token = jwt.decode(
            await signer.sign(audience="https://gw.example/fhir", requester=requester, ihi=ihi),
            public,
            algorithms=["ES256"],
        )
        assert token.header == {"alg": "ES256", "kid": "k1", "typ": TYPE}
        claims = token.claims
        assert (claims["iss"], claims["aud"], claims["sub"], claims["client_service"]) == (
            "https://registry.example", "https://gw.example/fhir", "ehr", "svc",
        )  # fmt: skip
        assert (claims["purpose_of_use"], claims["act"], claims["ihi"]) == ("TREAT", {"sub": hpii}, ihi)
        assert claims["exp"] - claims["iat"] == LIFETIME
        seen.add(claims["jti"])
    assert len(seen) == 300
    anonymous = await signer.sign(audience="a", requester=Requester(client_id="c", service_id="s"), ihi=ihi)
    assert "purpose_of_use" not in jwt.decode(anonymous, public, algorithms=["ES256"]).claims
