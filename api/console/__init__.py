"""The web console under `/ui/`: server-rendered pages over the same route handlers the REST API runs.

Every page calls the REST route's own handler function (`environments.show.fn`, `ops.status.fn`, …)
with the browser's request, so what a page shows and who may see or change it is decided in one place:
the route and the core functions it calls. The console adds only the session (`session`: the access
token in an HttpOnly, SameSite=Strict cookie, read as the `Authorization` header, and a CSRF token on
every write), HTML (`templates/`), and a little JavaScript (`static/console.js`) that swaps the parts
the server pushes over server-sent events. Every asset is in the package: the console works offline.
"""
