"""REST API of the migration app: snapshots, mappings, crosswalks, contracts, runs."""
