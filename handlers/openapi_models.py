"""FastAPI imported with its own OpenAPI models built when first used: importing this module
imports FastAPI so, and must come before anything else imports it (handlers.factory imports it
first; tests/unit/test_handler_import.py checks that the Lambda handler's import keeps it so).

FastAPI defines some forty pydantic models of the OpenAPI document (fastapi.openapi.models) when
it is imported, and pydantic builds each one's validator and serializer there and then: about 0.04
s of the Lambda handler's import on Python 3.12, the images' interpreter, though only a request for
/openapi.json or /docs uses them. pydantic's `defer_build` puts each build off until the model is
first used; FastAPI's models take their configuration from pydantic's BaseModel, so it is set
there while FastAPI is imported and taken away after it: the service's own models are built as
they are defined. The document is the same either way (tested).
"""

from __future__ import annotations

from pydantic import BaseModel

_config = BaseModel.model_config
_config["defer_build"] = True
try:
    import fastapi.openapi.models  # noqa: F401  (fastapi itself first)
finally:
    del _config["defer_build"]
