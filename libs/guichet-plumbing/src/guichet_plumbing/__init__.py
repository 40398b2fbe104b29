"""Plumbing shared by Guichet services: no domain logic lives here."""
