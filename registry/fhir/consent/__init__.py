"""``Consent``: a patient's privacy consent (IHE PCF)."""
