"""Server settings shared by `incidents serve` and the benchmark floor (incidents/serving.py)."""

from __future__ import annotations

import gc

from incidents import serving


def test_a_worker_freezes_its_start_up_heap_before_taking_requests():
    gc.unfreeze()
    threshold = gc.get_threshold()
    try:
        assert gc.get_freeze_count() == 0
        serving.post_worker_init(None)  # what gunicorn calls in each worker once the app is loaded
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app and SQLAlchemy's mappers: none is walked by a collection
        assert gc.get_threshold() == (serving.GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_access_log_line_ends_with_the_request_duration():
    assert serving.access_log_format == serving.ACCESS_LOG_FORMAT
    assert serving.ACCESS_LOG_FORMAT.endswith(" %(M)sms")


def test_serve_closes_each_connection_after_its_response_unless_told_otherwise():
    settings = serving.gunicorn_settings("127.0.0.1", 5000, 2, 8)
    assert (settings["workers"], settings["threads"], settings["keepalive"]) == (2, 8, 0)
    assert settings["worker_connections"] == 8  # a busy worker leaves the next connection to a free one
    assert settings["worker_class"] == "gthread" and settings["post_worker_init"] is serving.post_worker_init
    assert settings["access_log_format"] == serving.ACCESS_LOG_FORMAT
    kept = serving.gunicorn_settings("127.0.0.1", 5000, 2, 8, keep_alive=5)
    assert (kept["keepalive"], kept["worker_connections"]) == (5, 1000)


def test_gunicorn_accepts_every_setting_serve_gives_it():
    from gunicorn.config import Config

    config = Config()
    for name, value in serving.gunicorn_settings("127.0.0.1", 5000, 2, 8).items():
        config.set(name, value)  # an unknown name or a bad value raises here
    assert config.keepalive == 0 and config.worker_connections == config.threads == 8
