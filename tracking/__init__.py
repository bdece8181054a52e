"""MLflow: a fine-tune's run (params, curves, figures, the model), the registry and its champion alias; no Prefect."""
