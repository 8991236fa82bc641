"""The back-office web console and its HTTP API (FastAPI, Jinja2 pages, /api/v1 JSON).

Pages need a login (session cookie, CSRF token on every form); the API needs a bearer token.
Everything is read through the back-office store's own queries (``backoffice/queries.py``).
"""

# an API token's lifetime in days, `console token create --days`: its default and its most
# (here, where the command line reads them without loading the console)
TOKEN_DAYS_DEFAULT = 90
TOKEN_DAYS_MAX = 365
# an expired API token stays listed (as expired) this many days, then a new token or a console
# start forgets it
EXPIRED_TOKEN_KEPT_DAYS = 30
