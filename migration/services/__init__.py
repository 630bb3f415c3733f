"""Write services of the migration app, one module per entity group."""
