"""REST API of the connectors app: list, detail, check, discover, profile."""
