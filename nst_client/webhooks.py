"""Verify a webhook delivery from the nst service (Standard Webhooks signature, replay window)."""

from nst_shared.webhooks import verify as verify_signature

__all__ = ["verify_signature"]
