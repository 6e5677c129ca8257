import pytest

from incidents.errors import Conflict, Invalid
from incidents.postmortem import blameless
from tests.factories import make_user


def phrases(session, text):
    return [f.phrase for f in blameless.check_text(session, text)]


def test_flags_hindsight_and_blame_wording_with_positions(session):
    text = ("We should have seen it. Obviously the deploy failed to roll back: human error, careless. "
            "Why didn't we page?")
    findings = blameless.check_text(session, text)
    assert [f.phrase for f in findings] == ["should have", "Obviously", "failed to", "human error", "careless",
                                            "Why didn't"]
    for f in findings:
        assert text[f.start:f.end] == f.phrase
        assert f.suggestion


def test_curly_apostrophes_and_spacing_are_matched(session):
    assert phrases(session, "why didn\u2019t  we know") == ["why didn\u2019t"]
    assert phrases(session, "The shoulder haveing forgotten") == []  # whole words only


def test_a_person_as_the_subject_of_a_failure(session):
    make_user(name="Priya Patel")
    findings = blameless.check_text(session, "Priya forgot to renew the certificate. Then Marco failed to notice.")
    assert [f.phrase for f in findings] == ["Priya forgot", "Marco failed to"]
    assert all("instead of" in f.suggestion for f in findings)
    assert phrases(session, "We failed to notice. The cache broke.") == ["failed to"]
    # An adverb before the name is its own finding, not part of the person.
    assert phrases(session, "Obviously priya forgot.") == ["Obviously", "priya forgot"]
    assert phrases(session, "Priya Patel should have checked") == ["Priya Patel should have"]


def test_clean_text_has_no_findings(session):
    assert phrases(session, "The alert fired at 10:02 and the on-call engineer rolled back at 10:09.") == []
    assert phrases(session, "") == []
    with pytest.raises(Invalid):
        blameless.check_text(session, "x" * (blameless.MAX_TEXT + 1))


def test_admins_extend_and_retire_words(session):
    assert phrases(session, "a lapse in judgement") == []
    row = blameless.create_phrase(session, phrase="Lapse  in judgement", suggestion="Describe the conditions.",
                                  category="blame")
    assert row.phrase == "lapse in judgement"
    assert phrases(session, "a lapse in judgement") == ["lapse in judgement"]
    with pytest.raises(Conflict):
        blameless.create_phrase(session, phrase="lapse in judgement", suggestion="x")
    with pytest.raises(Invalid):
        blameless.create_phrase(session, phrase="", suggestion="", category="mood")
    blameless.update_phrase(session, row.id, suggestion="Describe it.", category="blame", active=False)
    assert phrases(session, "a lapse in judgement") == []


def test_findings_always_point_at_the_text_they_name(session):
    """Property: for any text, every finding's span is inside it, quotes it exactly, and none start twice."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    make_user(name="Sam Sample")
    words = st.sampled_from(["should have", "Sam", "forgot", "failed to", "Why didn’t", "human error", "the",
                             "deploy", "Obviously", "careless", ".", "\n", "Alex", "didn't", "ok"])
    texts = st.one_of(st.text(max_size=200), st.lists(words, max_size=30).map(" ".join))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(texts)
    def check(text):
        findings = blameless.check_text(session, text)
        assert [f.start for f in findings] == sorted(f.start for f in findings)
        assert len({f.start for f in findings}) == len(findings)
        for f in findings:
            assert 0 <= f.start < f.end <= len(text) and text[f.start:f.end] == f.phrase and f.suggestion

    check()
