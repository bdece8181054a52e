"""Plain PyTorch and data definitions of the recognizer. Nothing here imports Prefect."""
