"""Schemathesis against /openapi.json of the served app, with valid tokens.

Every operation but the step webhooks (QStash-signed, never JWT) is fuzzed
with generated and with deliberately invalid input: no 5xx, status codes,
content types, headers and bodies as declared, invalid input refused with
a 4xx. Operations on a queue are also called with a real (completed) queue
of the caller. Runs on SQLite: the HTTP surface is the same on Postgres.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from api.token import mint
from tests.api.conftest import Client
from tests.handlers.conftest import Pipeline

MAX_EXAMPLES = 30
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/vidpipe.db"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[dict[str, Any]]:
    from tests.handlers import conftest as pipelines

    tmp = tmp_path_factory.mktemp("fuzz-app")
    factory = pipelines.pipeline_factory.__wrapped__(database_url, tmp)  # type: ignore[attr-defined]
    make: Callable[..., Pipeline] = next(factory)
    pipeline = make(VIDPIPE_STORAGE_DIR=str(Path(tmp) / "storage"), VIDPIPE_MAX_UPLOAD_BYTES=1_000_000)
    tutor = Client(pipeline, "tutor-fuzz")
    queue_id = tutor.upload().json()["queue_id"]
    tutor.wait_for(queue_id)
    yield {"pipeline": pipeline, "queue_id": queue_id, "token": mint(pipeline.settings, "tutor-fuzz", "tutor")}
    tutor.close()
    next(factory, None)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors_and_every_answer_matches_the_schema(fuzzed: dict[str, Any], mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed['pipeline'].api.url}/openapi.json").exclude(path_regex="/steps/")
    # unknown query parameters are ignored on purpose (frontends add cache-busters)
    schema.config.generation.update(allow_extra_parameters=False)
    headers = {"Authorization": f"Bearer {fuzzed['token']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    fuzzed_operations: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
            if "queueId" in (case.path_parameters or {}):
                case.path_parameters["queueId"] = fuzzed["queue_id"]
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid (no inputs)
            continue
        fuzzed_operations.append(operation.label)
    assert len(fuzzed_operations) >= (10 if mode is GenerationMode.POSITIVE else 6), fuzzed_operations
