"""REST API of the governance app: projects, audit trail, gates, sign-offs."""
