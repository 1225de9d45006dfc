def test_healthz_reports_database_ok(db, client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"


def test_healthz_reports_an_unreachable_broker(db, client, settings, free_port):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port}/0"
    from portal.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = ""

    assert response.status_code == 503
    assert "broker unreachable" in response.json()["checks"]["broker"]
