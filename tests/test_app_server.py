"""The launched app on 127.0.0.1, driven with gradio_client as an API user would."""
from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests._app import RAF_CLASSES, app_store, astronaut_path, checkpoint_dir, served  # noqa: F401


@pytest.fixture(scope="module")
def client(app_store):  # noqa: F811
    with served(app_store) as url:
        yield Client(url, verbose=False)


def _faces(result) -> list[dict]:
    """The JSON output of /analyze (the fifth output)."""
    return result[4]


def test_only_the_photo_and_evaluate_endpoints_are_public(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/analyze", "/evaluate"]


def test_astronaut_gives_one_face_with_probabilities(client):
    faces = _faces(client.predict(handle_file(str(astronaut_path())), api_name="/analyze"))
    assert len(faces) == 1
    face = faces[0]
    assert face["label"] in RAF_CLASSES and face["checkpoint"] == "POSTER++ · RAF-DB"
    assert list(face["probabilities"]) == list(RAF_CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_a_bad_file_is_an_error_and_the_next_request_succeeds(client, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("definitely not a picture")
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), api_name="/analyze")
    assert "Not an image" in str(info.value) and "Traceback" not in str(info.value)
    faces = _faces(client.predict(handle_file(str(astronaut_path())), api_name="/analyze"))
    assert len(faces) == 1


def test_concurrent_clients_all_get_answers(client):
    jobs = [client.submit(handle_file(str(astronaut_path())), api_name="/analyze") for _ in range(3)]
    assert all(len(_faces(job.result(timeout=120))) == 1 for job in jobs)
