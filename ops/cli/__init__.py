"""The `remotegpu` command line.

- `app.py`: the root app, its `--help` panels and the console-script entry point `main`.
- `server/`: commands that run or administer a server (they need its database or its cluster): `dev`,
  `api`, `reconciler`, `simcluster`, `bench`, `db`, `users`; one module per command or group.
- `client/`: commands that talk to the API, never to the database: one module per noun (environments,
  workspaces, hosts, quotas, billing…); `client/session.py` signs them in and resolves workspaces.
- `typer_tweaks.py`: the words typer shows for values and arguments, as click has them.
"""
