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
