"""Model cards (from the typed metadata), Hub uploads and the Space: reads models, never runs them."""
