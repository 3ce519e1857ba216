# ruff: noqa
# mypy: ignore-errors
# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Integration Examples" > "Programmatic Client
# Management"), verbatim below the marker line. Substituted: nothing in the text; the test sets the module
# globals BASE_URL and ADMIN_KEY to the server under test and its admin key before calling the functions.
# Added: `import time` (the seed calls time.time() without importing it).
import time

# ---- seed text starts here ----
import requests

ADMIN_KEY = "your-admin-key"
BASE_URL = "http://localhost:2906"


def create_client(client_id, api_key, description, providers):
    response = requests.post(
        f"{BASE_URL}/admin/v1/clients",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        json={
            "client_id": client_id,
            "api_key": api_key,
            "description": description,
            "allowed_providers": providers,
        },
    )
    return response.json()


def get_client_metrics(client_id, hours=24):
    start = int(time.time()) - (hours * 3600)
    end = int(time.time())

    response = requests.get(
        f"{BASE_URL}/admin/v1/metrics/clients/{client_id}",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        params={"start": start, "end": end},
    )
    return response.json()
