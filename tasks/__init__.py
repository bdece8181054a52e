"""Pipeline stages. Each module owns its settings model; the @task wrappers live beside the pure functions."""
