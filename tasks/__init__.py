"""Pipeline stages: thin Prefect tasks over the libraries (synth/, models/, tracking/), each a declaration."""
