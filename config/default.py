"""Non-secret defaults. Every key can be overridden by an INCIDENTS_<KEY> environment variable."""

# SQLAlchemy URL; empty means an SQLite file `incidents.sqlite3` in the instance folder.
DATABASE_URL = ""
# Connections each process keeps open to PostgreSQL (plus up to 10 more at peaks); SQLite ignores it.
DATABASE_POOL_SIZE = 5
# Public URL of this installation, used in links and e-mails; https also makes cookies Secure. Production should
# set it. Empty: inside a request the address it came to; elsewhere (jobs, e-mails) the one `serve` listens on and
# hands to its workers, else http://127.0.0.1:5000 (incidents/urls.py).
BASE_URL = ""
# Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are believed (client address for sign-in
# throttling and logs, https for Secure cookies). 0: none; the headers are ignored, as any client can forge them.
TRUSTED_PROXIES = 0
# Seconds SQLite waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30
# Default and maximum page sizes of lists (web and API).
PER_PAGE = 25
MAX_PER_PAGE = 200
# Failed sign-ins allowed within LOGIN_THROTTLE_WINDOW seconds. Per account from one client address (counted
# since that address last signed in to it): from then on every further try waits LOGIN_THROTTLE_DELAY seconds,
# doubling after each failure (at most the window), while the same account still signs in from elsewhere. Per
# account from all addresses: far higher, against guessing spread over many addresses (reaching it refuses the
# account everywhere until failures age out of the window). Per client address, whatever the accounts.
LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS = 5
LOGIN_MAX_FAILURES_PER_ACCOUNT = 50
LOGIN_MAX_FAILURES_PER_ADDRESS = 20
LOGIN_THROTTLE_WINDOW = 900
LOGIN_THROTTLE_DELAY = 30
# Largest request body accepted, in bytes (webhooks answer 413 above it).
MAX_CONTENT_LENGTH = 1024 * 1024
# Session lifetime in seconds: how long "keep me signed in" (the remember cookie) lasts.
PERMANENT_SESSION_LIFETIME = 14 * 24 * 3600
# Name of the "keep me signed in" cookie (Flask-Login's own default).
REMEMBER_COOKIE_NAME = "remember_token"
# Hosts (JSON list, like ["grafana.example.com"]) that images in Markdown may load from over https, besides this
# site; other images are dropped (no tracking pixels), and the Content-Security-Policy allows only these.
MARKDOWN_IMAGE_HOSTS = []

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
# URLs that users store (a team's Slack webhook) must be https and lead to public addresses, checked when saved
# and when used (incidents/outbound.py). True also allows private, loopback and link-local targets and plain
# http: on-premise chat servers, tests with local receivers. Settings like SLACK_WEBHOOK_URL are never restricted.
OUTBOUND_ALLOW_PRIVATE = False
# Severities announced to the Slack channels, and the default filter of a new e-mail subscription.
NOTIFY_SEVERITIES = "SEV1,SEV2"
# Announce every declaration and status change (Slack, e-mail subscribers) through a job after its commit.
NOTIFY_ON_COMMIT = True
# Minutes until the next status update is due, when an update (or the declaration) names no time of its own.
UPDATE_INTERVAL_MINUTES = 30
# Whoever declares an incident from the web, the API or Slack becomes its commander (false: nobody until assigned).
DECLARER_IS_COMMANDER = True
# Seconds after which a delivery claimed by a worker that never reported back may be tried again.
NOTIFY_SEND_LEASE = 600

# Webhook deliveries that arrive together are applied in one transaction by each web process's writer thread
# (group commit; every delivery is still committed before it is answered). False: one transaction each.
INGEST_BATCH = True
# The most deliveries one such transaction applies.
INGEST_BATCH_MAX = 32
# Seconds each process trusts its cached lookup of a webhook token: a disabled or rotated integration token
# stops working within this time on every worker, and a busy webhook does not query for it on every delivery.
INTEGRATION_CACHE_TTL = 10.0

# Background jobs (huey). Empty QUEUE_URL = an SQLite file `queue.sqlite3` in the instance folder (one host);
# `redis://host:6379/0` lets many workers on many machines share the queue; `memory://` is for tests.
QUEUE_URL = ""
# Queue name: apps sharing one Redis database need different names.
QUEUE_NAME = "incidents"
# Run jobs synchronously at enqueue time, in memory; null = only when TESTING is on.
QUEUE_IMMEDIATE = None
# Extra modules to import for their @job declarations (plugins, tests), as a JSON list.
JOB_IMPORTS = []
# Worker threads of the consumer that `incidents serve` starts (`incidents worker --workers N` overrides).
WORKER_THREADS = 2
# CPU niceness of the job worker that `incidents serve` starts (0-19): background jobs give way to web requests
# when both want the CPU (a notification may go out some milliseconds later), and use it fully when it is idle.
WORKER_NICE = 5

# Shortcut (Clubhouse) REST API v3. The token is a secret: set INCIDENTS_SHORTCUT_API_TOKEN in the environment.
SHORTCUT_API_URL = "https://api.app.shortcut.com/api/v3"
SHORTCUT_API_TOKEN = ""
# Secret shared with Shortcut's outgoing webhook; Payload-Signature is its hex HMAC-SHA256 of the raw body.
SHORTCUT_WEBHOOK_SECRET = ""
# Default workflow state (id) of new cards when a team has none of its own.
SHORTCUT_WORKFLOW_STATE_ID = None
# Seconds to wait for Shortcut to connect and to answer, per request.
SHORTCUT_TIMEOUT = 10
# Client-side request budget per minute and per process, below Shortcut's documented 200.
SHORTCUT_MAX_PER_MINUTE = 180
# Consecutive failures (connection errors, timeouts, 5xx) that open the circuit, and how long it stays open (s).
SHORTCUT_CIRCUIT_THRESHOLD = 5
SHORTCUT_CIRCUIT_COOLDOWN = 60
# Prefix of every card's external_id ("<prefix>:action-item:<id>"): the key that makes a create exactly once.
# Change it only on a fresh workspace, and give each installation sharing a workspace its own.
SHORTCUT_EXTERNAL_ID_PREFIX = "incidents"
# story_type of a card by action item type (prevent, mitigate, detect, process, repair); others get the default.
SHORTCUT_STORY_TYPES = {"repair": "bug"}
SHORTCUT_DEFAULT_STORY_TYPE = "chore"
# Seconds to wait after a 429 without Retry-After, and the longest wait a job sits through (longer: retry later).
SHORTCUT_RATE_LIMIT_WAIT = 60
SHORTCUT_MAX_RATE_LIMIT_WAIT = 10
# Seconds an export job holds its row; a worker killed mid-call leaves it to the retry sweep after that.
SHORTCUT_EXPORT_LEASE = 300
# Retry delay of a pending export after a failure: base * 2^(attempts-1) seconds, at most the cap.
SHORTCUT_RETRY_BASE = 30
SHORTCUT_RETRY_CAP = 3600
# Stories the reconcile job reads per run (every 10 minutes), oldest-synced first; well within the rate limit.
SHORTCUT_RECONCILE_BATCH = 100

# --- the Slack app (incidents/slack/) ---
# Signing Secret of the Slack app (Basic Information): every request from Slack is verified with it; without it
# /slack/* answers 401. Set INCIDENTS_SLACK_SIGNING_SECRET in the environment.
SLACK_SIGNING_SECRET = ""
# Bot User OAuth Token (xoxb-...): the Web API calls (channels, summary, modals) are off without it.
SLACK_BOT_TOKEN = ""
# Web API base with a trailing slash; method names are appended (tests point it at a local fake).
SLACK_API_URL = "https://slack.com/api/"
# Channel ID (C...) where new incidents are announced with a link to their channel; empty: no announcement.
SLACK_ANNOUNCE_CHANNEL = ""
# An incident a person declared (web, API, Slack) always gets its channel; one an alert opened only at these
# severities (a noisy SEV4 alert should not open a channel).
SLACK_ALERT_CHANNEL_SEVERITIES = "SEV1,SEV2"
# The longest 429 Retry-After a job sits through (longer: the job fails and huey retries it later); each Web API
# call waits at most SLACK_TIMEOUT seconds (above, shared with the incoming webhooks).
SLACK_MAX_RATE_LIMIT_WAIT = 30

# --- tech-debt ledger and weekly report (incidents/report/) ---
# The global recipients of the all-teams weekly report, comma-separated (admins can add more on /debt/settings;
# each team's own list is set there too).
REPORT_RECIPIENTS = ""
# When the weekly report goes out: day (mon..sun), local time HH:MM and IANA time zone. Weeks are ISO weeks
# (Monday to Sunday) in that zone; the report covers the last complete week.
REPORT_WEEKDAY = "mon"
REPORT_TIME = "09:00"
REPORT_TIMEZONE = "UTC"
# Weeks shown by the dashboard and the API when none are asked for.
DEBT_WEEKS = 12

# --- observability (incidents/metrics.py, incidents/logs.py) ---
# "json": one JSON object per log line (web, gunicorn's error and access logs, worker); "text": human lines.
LOG_FORMAT = "text"
# Bearer token that lets non-loopback clients read GET /metrics (a secret: set INCIDENTS_METRICS_TOKEN). Empty: none.
METRICS_TOKEN = ""

# --- the blameless coach (POST /api/v1/blameless-check, the section editor) ---
# The longest text it checks, in characters (longer is a 422), and the most findings one answer lists.
BLAMELESS_MAX_TEXT = 100_000
BLAMELESS_MAX_FINDINGS = 100

# --- insights (/insights, /api/v1/insights/*) ---
# Seconds each web/API process keeps the figures of one scope (period, filters) before computing them again:
# a year of a million incidents is seconds of scanning, and a dashboard is read far more often than it moves.
# 0 computes every request afresh.
INSIGHTS_CACHE_SECONDS = 60

# --- single sign-on with OpenID Connect (incidents/auth/sso.py; README "Single sign-on") ---
# The provider's issuer URL (its discovery document is <issuer>/.well-known/openid-configuration). Empty: no SSO.
OIDC_ISSUER = ""
# The client registered at the provider; the secret belongs in INCIDENTS_OIDC_CLIENT_SECRET. Redirect URL to
# register: <BASE_URL>/login/oidc/callback.
OIDC_CLIENT_ID = ""
OIDC_CLIENT_SECRET = ""
# The ID token claim that lists the user's groups or roles (a list or one string).
OIDC_ROLE_CLAIM = "groups"
# Group -> role, as JSON: {"incident-admins": "admin", "sre": "responder"}; the highest mapped role wins, at every
# sign-in. A bad JSON or unknown role stops the start.
OIDC_ROLE_MAP = {}
# The role of whoever no group maps: viewer, responder, admin, or none to refuse them.
OIDC_DEFAULT_ROLE = "viewer"
# Seconds to wait for the provider (discovery, keys, token exchange).
OIDC_TIMEOUT = 10
# True: the password form is off, except for the break-glass admins below (accounts with the admin role).
SSO_ONLY = False
# E-mail addresses (comma-separated, or a JSON list) of admins who may still sign in with a password when SSO_ONLY.
BREAK_GLASS_ADMINS = ""
