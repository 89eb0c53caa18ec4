"""Secrets: one small interface (`store.SecretStore`), a built-in backend that encrypts values in Postgres
(`builtin`) and one that keeps them in HashiCorp Vault's KV v2 engine (`vault`); `configured` picks one
from the settings."""
