"""Looks through the API: the form field, the job record's applied values, the page's config and thumbnails."""

from __future__ import annotations

from nst_shared.looks import LOOK_NAMES, LOOKS
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit, wait_status


def test_submit_job_with_a_look_records_the_values_applied(service):
    with service.client() as client:
        job = submit(client, look="painterly", tv_weight="0.5").json()
        assert job["params"]["look"] == "painterly" and job["params"]["tv_weight"] == 0.5
        assert job["params"]["style_weight"] == LOOKS["painterly"]["style_weight"]
        assert job["params"]["style_layer_weights"] == list(LOOKS["painterly"]["style_layer_weights"])
        done = wait_status(client, job["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        # A CPU worker changes none of them but the seed, which it draws when unset.
        assert job["params"]["seed"] is None and done["params"]["seed"] is not None
        assert {**done["params"], "seed": None} == job["params"]


def test_submit_job_explicit_parameter_wins_over_the_look(service):
    with service.client() as client:
        params = submit(client, look="texture", style_weight="3").json()["params"]
        assert params["look"] == "texture" and params["style_weight"] == 3.0
        assert params["style_layer_weights"] == list(LOOKS["texture"]["style_layer_weights"])


def test_submit_job_unknown_look_422_names_the_known_ones(service):
    with service.client() as client:
        error = error_of(submit(client, look="impressionist"), 422)
        assert error["field"] == "look" and error["code"] == "invalid_parameter"
        assert all(name in error["message"] for name in LOOK_NAMES), error


def test_openapi_form_offers_the_looks(service):
    with service.client() as client:
        schema = client.get("/openapi.json").json()
    form = schema["components"]["schemas"]["JobSubmission"]
    assert form["properties"]["look"]["enum"] == list(LOOK_NAMES)
    assert form["properties"]["look"]["default"] == "balanced"


def test_page_config_lists_the_looks_with_their_thumbnails(service):
    with service.client() as client:
        looks = client.get("/api/config").json()["looks"]
        assert [look["name"] for look in looks] == list(LOOK_NAMES)
        for look in looks:
            thumbnail = client.get(look["thumbnail"])
            assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
            assert len(thumbnail.content) < 40_000
        assert looks[LOOK_NAMES.index("painterly")]["values"]["style_weight"] == LOOKS["painterly"]["style_weight"]
        assert client.get("/examples/looks/..%2Fchelsea.jpg").status_code == 404
        assert client.get("/examples/looks/nope.jpg").status_code == 404
