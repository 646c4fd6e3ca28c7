"""Migration scripts, one per schema version; never edited once released."""
