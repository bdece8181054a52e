import os

import yaml

from flows.config import PipelineConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_deployment_entrypoints_load_and_parameters_validate():
    from prefect.flows import load_flow_from_entrypoint

    with open(os.path.join(ROOT, "deployments", "prefect.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    assert spec["deployments"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        import jsonschema

        from flows.config import config_from_form

        for d in spec["deployments"]:
            flow = load_flow_from_entrypoint(d["entrypoint"])
            schema = flow.parameters.model_dump()
            # The form leads with a preset and the output; a whole config is the advanced way.
            assert list(schema["properties"])[:2] == ["preset", "out"], d["name"]
            assert "config" in schema["properties"]
            jsonschema.validate(d["parameters"], schema)  # as the server checks a run's parameters
            p = d["parameters"]
            assert set(p) == {"preset", "out"}, d["name"]
            assert config_from_form(p["preset"], {"out": p["out"]}).train.pretrained == "korean_g2"
    finally:
        os.chdir(cwd)


def test_every_preset_passes_the_json_schema_the_prefect_server_enforces():
    """The server validates deployment parameters against the JSON schema, not pydantic: defaults must pass too."""
    import jsonschema

    from flows.config import load_config

    schema = PipelineConfig.model_json_schema()
    for preset in ("quick", "seed", "cpu-reference", "smoke", "retrain"):
        jsonschema.validate(load_config(preset, []).model_dump(mode="json"), schema)
    jsonschema.validate(PipelineConfig().model_dump(mode="json"), schema)
