"""Accounts: users, credentials and tokens, sign-in limits, workspaces and their members."""
