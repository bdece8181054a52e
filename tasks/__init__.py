"""Pipeline stages: thin Prefect tasks over the libraries (synth/, models/); their settings are in settings.py."""
