"""The one mail sender, against a real SMTP server on loopback."""

from __future__ import annotations

import logging

import pytest

from incidents.mail import (
    MailError,
    MailNotConfigured,
    build_message,
    message_id_for,
    parse_smtp_url,
    send_message,
)


def config(server, **extra) -> dict:
    return {"SMTP_URL": server.url, "SMTP_TIMEOUT": 5, "MAIL_FROM": "Incidents <incidents@example.org>"} | extra


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.org", ("mail.example.org", 25, None, None, False, False)),
    ("smtp://mail.example.org?starttls=true", ("mail.example.org", 587, None, None, False, True)),
    ("smtps://mail.example.org", ("mail.example.org", 465, None, None, True, False)),
    ("smtp://u:p@mail.example.org:2525?starttls=1", ("mail.example.org", 2525, "u", "p", False, True)),
    ("smtp://ops%40example.org:p%40ss%3Aw%2Frd@[::1]:26", ("::1", 26, "ops@example.org", "p@ss:w/rd", False, False)),
    ("smtps://u:@h?starttls=true", ("h", 465, "u", "", True, False)),
])
def test_parse_smtp_url(url, expected):
    s = parse_smtp_url(url)
    assert (s.host, s.port, s.username, s.password, s.implicit_tls, s.starttls) == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "smtp://h:port", "mail.example.org"])
def test_parse_smtp_url_refuses_nonsense(url):
    with pytest.raises(ValueError, match="SMTP URL"):
        parse_smtp_url(url)


def test_settings_repr_hides_the_password():
    assert "hunter2" not in repr(parse_smtp_url("smtp://ops:hunter2@mail.example.org"))


def test_text_and_html_parts_arrive_and_parse(smtp_server):
    msg = build_message("Rita <rita@example.com>", "INC-7 opened: Checkout down", "Plain body — ünïcode\n",
                        "<p>HTML <b>body</b></p>", headers={"X-Incident": "INC-7"})
    refused = send_message(config(smtp_server), msg)

    assert refused == {}
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["rita@example.com"]
    assert received.mail_from == "incidents@example.org"
    m = received.message
    assert m["Subject"] == "INC-7 opened: Checkout down"
    assert m["From"] == "Incidents <incidents@example.org>"
    assert m["X-Incident"] == "INC-7"
    assert m.get_content_type() == "multipart/alternative"
    assert received.text == "Plain body — ünïcode\n"
    assert "<b>body</b>" in received.html
    assert m["Message-ID"].endswith("@example.org>")
    assert received.login is None


def test_text_only_message_is_not_multipart(smtp_server):
    send_message(config(smtp_server), build_message(["a@example.com", "b@example.com"], "Hi", "Just text"))
    [received] = smtp_server.messages
    assert received.message.get_content_type() == "text/plain"
    assert sorted(received.rcpt_tos) == ["a@example.com", "b@example.com"]
    assert received.html is None


def test_stable_message_id_survives_a_retry(smtp_server):
    mid = message_id_for("incident:7:opened/rita@example.com", "incidents@example.org")
    assert mid == message_id_for("incident:7:opened/rita@example.com", "Incidents <incidents@example.org>")
    assert mid != message_id_for("incident:7:opened/sam@example.com", "incidents@example.org")
    for _ in range(2):
        send_message(config(smtp_server), build_message("rita@example.com", "S", "T", message_id=mid))
    assert [m.message["Message-ID"] for m in smtp_server.messages] == [mid, mid]


def test_authenticates_with_url_decoded_credentials(smtp_server, caplog):
    smtp_server.credentials = ("ops@example.org", "p@ss:word")
    url = smtp_server.url.replace("smtp://", "smtp://ops%40example.org:p%40ss%3Aword@")
    caplog.set_level(logging.DEBUG)
    send_message(config(smtp_server, SMTP_URL=url), build_message("rita@example.com", "S", "T"))
    [received] = smtp_server.messages
    assert received.login == "ops@example.org"
    assert "p@ss:word" not in caplog.text


def test_wrong_password_is_permanent_and_not_logged(smtp_server, caplog):
    smtp_server.credentials = ("ops", "right-password")
    url = smtp_server.url.replace("smtp://", "smtp://ops:wrong-password@")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server, SMTP_URL=url), build_message("rita@example.com", "S", "T"))
    assert err.value.temporary is False
    assert err.value.code == 535
    assert "wrong-password" not in str(err.value) and "wrong-password" not in caplog.text
    assert smtp_server.messages == []


def test_missing_login_is_refused_by_a_server_that_needs_one(smtp_server):
    smtp_server.credentials = ("ops", "pw")
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server), build_message("rita@example.com", "S", "T"))
    assert (err.value.temporary, err.value.code) == (False, 530)


def test_4xx_reply_is_a_temporary_error_and_the_retry_delivers(smtp_server):
    smtp_server.fail_next(1, "451 4.3.0 Mailbox busy")
    msg = build_message("rita@example.com", "S", "T")
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server), msg)
    assert (err.value.temporary, err.value.code) == (True, 451)
    assert "Mailbox busy" in str(err.value)
    assert smtp_server.messages == []

    send_message(config(smtp_server), msg)
    assert len(smtp_server.messages) == 1


def test_5xx_reply_is_a_permanent_error(smtp_server):
    smtp_server.fail_next(1, "554 5.7.1 Rejected as spam")
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server), build_message("rita@example.com", "S", "T"))
    assert (err.value.temporary, err.value.code) == (False, 554)


def test_server_down_is_a_temporary_error(smtp_server):
    smtp_server.stop()
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server), build_message("rita@example.com", "S", "T"))
    assert err.value.temporary is True
    assert f"127.0.0.1:{smtp_server.port}" in str(err.value)


def test_starttls_against_a_server_without_it_is_permanent(smtp_server):
    with pytest.raises(MailError) as err:
        send_message(config(smtp_server, SMTP_URL=smtp_server.url + "?starttls=true"),
                     build_message("rita@example.com", "S", "T"))
    assert err.value.temporary is False
    assert "STARTTLS" in str(err.value)


def test_no_smtp_url_means_not_configured():
    with pytest.raises(MailNotConfigured):
        send_message({"SMTP_URL": ""}, build_message("rita@example.com", "S", "T"))
