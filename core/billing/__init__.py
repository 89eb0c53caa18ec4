"""Billing: usage and invoices as users and admins read them."""
