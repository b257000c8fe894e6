"""The web pages' forms, one module per area."""
