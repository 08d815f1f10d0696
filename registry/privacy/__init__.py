"""Privacy (DESIGN §12): the decision point every disclosure passes through, and the Consent records
it reads (their compact per-patient policy, the signal that they changed)."""
