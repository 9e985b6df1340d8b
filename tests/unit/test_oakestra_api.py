"""The Oakestra API client against the stand-in root orchestrator
(tests/oakestra_standin.py: a stand-in, not Oakestra), on a real port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flops.errors import ServiceUnavailableError
from flops_management.orchestrators import oakestra_sla as sla
from flops_management.orchestrators.oakestra_api import (
    OakestraAPI,
    OakestraError,
    decode,
)
from tests.oakestra_standin import OakestraStandin
from tests.stack import free_port

JOB = "0123456789abcdef0123456789abcdef"
IMAGE = "registry.example:5000/flops/t/p:tag"


@pytest.fixture
def standin() -> Iterator[OakestraStandin]:
    server = OakestraStandin().start()
    yield server
    server.stop()


def _service(name: str, rr_index: int | None = None) -> dict[str, object]:
    plan = sla.ServicePlan(
        name,
        ["learner"],
        {},
        rr_ip=None if rr_index is None else sla.rr_ip(JOB, rr_index),
    )
    return sla.microservice(plan, IMAGE)


def test_a_job_application_lives_and_goes_through_the_api(
    standin: OakestraStandin,
) -> None:
    api = OakestraAPI(standin.url, standin.username, standin.password)
    app_id = api.create_application(sla.application_sla(JOB, "Admin", "job", []))
    ids = [
        api.add_service(
            sla.application_sla(JOB, "Admin", "job", [_service(name, index)], app_id)
        )
        for index, name in enumerate(["aggregator", "learner0"])
    ]
    for service_id in ids:
        api.deploy(service_id)
    found = api.service(ids[0])  # twice-encoded by Oakestra: decoded
    assert found["microservice_name"] == "aggregator"
    assert [i["status"] for i in found["instance_list"]] == ["RUNNING"]
    assert [a["applicationID"] for a in api.applications()] == [app_id]
    api.undeploy(ids[1], 0)
    assert api.service(ids[1])["instance_list"] == []
    api.delete_service(ids[1])
    api.delete_application(app_id)
    assert standin.apps == {} and standin.services == {}
    assert standin.requests[:2] == [
        ("POST", "/api/auth/login"),
        ("POST", "/api/application/"),
    ]


def test_an_expired_token_is_renewed_once(standin: OakestraStandin) -> None:
    api = OakestraAPI(standin.url, standin.username, standin.password)
    api.login()
    standin.tokens.clear()  # Oakestra's tokens live 10 minutes
    assert api.applications() == []
    logins = [r for r in standin.requests if r[1] == "/api/auth/login"]
    assert len(logins) == 2


def test_refusals_name_the_url_the_call_and_the_reason(
    standin: OakestraStandin,
) -> None:
    wrong = OakestraAPI(standin.url, standin.username, "not-the-password")
    with pytest.raises(OakestraError) as refused:
        wrong.applications()
    assert standin.url in str(refused.value)
    assert "invalid username or password" in str(refused.value)
    assert "FLOPS_OAKESTRA_PASSWORD" in str(refused.value)

    api = OakestraAPI(standin.url, standin.username, standin.password)
    bad = sla.application_sla(JOB, "Admin", "job", [])
    bad["applications"][0]["application_name"] = "flops-job"  # not [a-zA-Z0-9]
    with pytest.raises(
        OakestraError, match=r"POST /api/application/ \(HTTP 400\).*SLA"
    ):
        api.create_application(bad)

    # A service whose address another application holds: Oakestra says so with
    # HTTP 200 and the service in failed_services.
    first = api.create_application(sla.application_sla(JOB, "Admin", "job", []))
    api.add_service(
        sla.application_sla(JOB, "Admin", "job", [_service("aggregator", 0)], first)
    )
    other = "f" * 32
    second = api.create_application(sla.application_sla(other, "Admin", "x", []))
    clash = _service("aggregator", 0)
    with pytest.raises(
        OakestraError, match=r"did not create service aggregator.*in use"
    ):
        api.add_service(sla.application_sla(other, "Admin", "x", [clash], second))


def test_an_unreachable_root_orchestrator_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError) as unreachable:
        OakestraAPI(url, "Admin", "x", timeout=2).applications()
    assert url in str(unreachable.value) and "FLOPS_OAKESTRA_URL" in str(
        unreachable.value
    )


def test_answers_are_decoded_as_often_as_they_were_encoded() -> None:
    assert decode('"[{\\"a\\": 1}]"') == [{"a": 1}]
    assert decode('{"a": 1}') == {"a": 1}
    assert decode('"plain words"') == "plain words"
