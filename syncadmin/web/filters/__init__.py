"""The web lists' FilterSets, one module per list."""
