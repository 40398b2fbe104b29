"""A third-party Open311 client from PyPI (`georeport`) against `make run`'s system.

georeport 0.3.1 reads (services, service definitions, requests) but cannot create a
request: the report is posted as the standard says (a form on `requests.json`), with
`requests`, the HTTP library georeport itself uses, then read back with georeport.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from georeport import GeoReport

from guichet_plumbing.localinfra import free_port


@pytest.fixture
def make_run(data_dir: Path) -> Iterator[str]:
    """`python -m guichet_launcher run`, exactly what `make run` starts, on a free port."""
    port = free_port()
    env = {**os.environ, "GUICHET_PORT": str(port), "GUICHET_DATA_DIR": str(data_dir)}
    env.pop("GUICHET_ROUTING_INTAKE_URL", None)
    log = (data_dir / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "guichet_launcher", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (data_dir / "run.log").read_text()
            try:
                if requests.get(f"{base}/routing/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "make run did not become ready within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_georeport_client_lists_services_posts_and_reads_a_request(make_run: str) -> None:
    client = GeoReport(f"{make_run}/routing/open311/v2", jurisdiction="admiville")
    [service] = client.get_service_list()
    assert service["service_code"] == "signalement-voirie"
    assert client.get_service_definition("signalement-voirie")["attributes"] == []

    posted = requests.post(
        f"{client.root_address}/requests.json",
        data={
            "jurisdiction_id": client.jurisdiction,
            "service_code": service["service_code"],
            "lat": "48.8566",
            "long": "2.3522",
            "address_string": "12 rue des Lilas, Admiville",
            "email": "ines.moreau@example.org",
            "description": "Lampadaire arraché",
        },
        timeout=20,
    )
    assert posted.status_code == 201, posted.text
    token = posted.json()[0]["token"]
    deadline = time.monotonic() + 30
    number = None
    while number is None:
        assert time.monotonic() < deadline, "the report was never routed"
        answer = requests.get(f"{client.root_address}/tokens/{token}.json", timeout=5)
        number = answer.json()[0]["service_request_id"]
        time.sleep(0.1)

    read = client.get_service_request(number)
    assert read["service_request_id"] == number
    assert read["status"] == "open"
    assert read["description"] == "Lampadaire arraché"
    assert (read["lat"], read["long"]) == (48.8566, 2.3522)
    [listed] = client.get_service_requests(service_code="signalement-voirie", status="open")
    assert listed["service_request_id"] == number

    # The same through XML, as georeport parses it.
    as_xml = GeoReport(client.root_address, jurisdiction="admiville", output_format="xml")
    assert as_xml.get_service_list()["service_code"] == "signalement-voirie"
    assert as_xml.get_service_request(number)["service_request_id"] == number
    assert as_xml.get_service_definition("signalement-voirie")["service_code"] == (
        "signalement-voirie"
    )

    # Bad input reaches the client as an HTTP 4xx with the standard's error list.
    with pytest.raises(requests.HTTPError) as refused:
        client.get_service_requests(status="fini")
    assert refused.value.response.status_code == 400
    assert refused.value.response.json()[0]["description"].startswith("status :")
