"""The renderer library: word lists, fonts and the font pool, handwriting effects, the trdg driver (no Prefect)."""
