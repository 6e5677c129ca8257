"""Non-secret defaults. Every key can be overridden by an INCIDENTS_<KEY> environment variable."""

# SQLAlchemy URL; empty means an SQLite file `incidents.sqlite3` in the instance folder.
DATABASE_URL = ""
# Public URL of this installation, used in links and e-mails; https also makes cookies Secure.
BASE_URL = "http://127.0.0.1:5000"
# Seconds SQLite waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30
# Default and maximum page sizes of lists (web and API).
PER_PAGE = 25
MAX_PER_PAGE = 200
# Failed logins allowed per account and per address within LOGIN_THROTTLE_WINDOW seconds.
LOGIN_MAX_FAILURES_PER_ACCOUNT = 5
LOGIN_MAX_FAILURES_PER_ADDRESS = 20
LOGIN_THROTTLE_WINDOW = 900
# Largest request body accepted, in bytes (webhooks answer 413 above it).
MAX_CONTENT_LENGTH = 1024 * 1024
# Session lifetime in seconds (remember-me and permanent sessions).
PERMANENT_SESSION_LIFETIME = 14 * 24 * 3600

# --- outbound e-mail and Slack (incidents/mail.py, incidents/notify/) ---
# SMTP server as a URL: smtp://user:pass@host:port, smtps://... for implicit TLS, smtp://...?starttls=true
# for STARTTLS (default ports 25 / 465 / 587). Percent-encode special characters in the password. Empty: no e-mail.
SMTP_URL = ""
# Seconds to wait for the SMTP server (connect and each reply).
SMTP_TIMEOUT = 10
# The From header of every e-mail.
MAIL_FROM = "Incidents <incidents@localhost>"
# Slack incoming-webhook URL that receives every notification; teams can add their own. Empty: none.
SLACK_WEBHOOK_URL = ""
# Seconds to wait for Slack.
SLACK_TIMEOUT = 10
# Severities announced to the Slack channels, and the default filter of a new e-mail subscription.
NOTIFY_SEVERITIES = "SEV1,SEV2"
# Seconds after which a delivery claimed by a worker that never reported back may be tried again.
NOTIFY_SEND_LEASE = 600
