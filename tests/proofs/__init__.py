"""Proofs that topup loses and doubles nothing (docs/guarantees.md lists them all)."""
