"""Property-based fuzzing of the REST API against its own OpenAPI schema (schemathesis).

Every route the schema lists gets generated requests, valid and invalid: none may get a
5xx, and every answer must match what the schema documents (status, content type, body).
The example count is bounded so that the run takes about a minute.
"""

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from digit_recognizer import modelfile  # noqa: E402
from digit_recognizer.serve import create_app  # noqa: E402

EXAMPLES = 40  # per route and method

# The shipped model; the /api/train routes without starting trainings (they answer 403).
app = create_app(modelfile.load(), training=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_as_documented(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
