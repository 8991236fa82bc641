"""The back-office web console and its HTTP API (FastAPI, Jinja2 pages, /api/v1 JSON).

Pages need a login (session cookie, CSRF token on every form); the API needs a bearer token.
Everything is read through the back-office store's own queries (``backoffice/queries.py``).
"""
