"""A real OpenID provider for the SSO tests, run as its own process: oidc-provider-mock, plus PKCE enforcement and
fault injection the mock lacks.

`python -m tests.oidc_provider` prints its port, then serves on 127.0.0.1. Besides the mock's endpoints
(discovery, authorize form, token, JWKS, PUT /users/<sub> to set a subject's claims):

- PKCE (S256) is enforced: a token request whose code_verifier does not match the authorize request's
  code_challenge is refused (invalid_grant), as a strict provider would.
- PUT /_fault {"mode": ...} makes the token endpoint answer with a bad ID token until the mode is cleared (null):
  "tamper" flips a byte of the signature; "wrong_aud" and "expired" re-sign it with the provider's own key, so
  only the audience or the expiry is wrong."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from urllib.parse import parse_qs, urlsplit

import flask
import oidc_provider_mock
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def build() -> flask.Flask:
    app = oidc_provider_mock.app(require_nonce=True)
    state = {"fault": None, "challenges": {}}

    @app.put("/_fault")
    def set_fault():
        state["fault"] = (flask.request.get_json(silent=True) or {}).get("mode")
        return "", 204

    @app.before_request
    def check_pkce():
        if flask.request.path != "/oauth2/token" or flask.request.form.get("grant_type") != "authorization_code":
            return None
        challenge = state["challenges"].pop(flask.request.form.get("code", ""), None)
        verifier = flask.request.form.get("code_verifier", "")
        if challenge is None or _b64encode(hashlib.sha256(verifier.encode()).digest()) != challenge:
            return flask.jsonify(error="invalid_grant", error_description="PKCE verification failed"), 400
        return None

    @app.after_request
    def rewrite(response: flask.Response):
        if flask.request.path == "/oauth2/authorize" and response.status_code == 302:
            code = parse_qs(urlsplit(response.headers["Location"]).query).get("code", [""])[0]
            if code and flask.request.args.get("code_challenge_method") == "S256":
                state["challenges"][code] = flask.request.args.get("code_challenge")
        if flask.request.path != "/oauth2/token" or response.status_code != 200 or not state["fault"]:
            return response
        body = response.get_json()
        header, payload, signature = body["id_token"].split(".")
        if state["fault"] == "tamper":
            raw = bytearray(_b64decode(signature))
            raw[len(raw) // 2] ^= 0x01
            body["id_token"] = f"{header}.{payload}.{_b64encode(bytes(raw))}"
        else:
            claims = json.loads(_b64decode(payload))
            if state["fault"] == "wrong_aud":
                # A token for another client that names us as its authorised party: only `aud` gives it away.
                claims["aud"], claims["azp"] = "another-client", claims["aud"]
            elif state["fault"] == "expired":
                claims["iat"], claims["exp"] = int(time.time()) - 7200, int(time.time()) - 3600
            key = RSAKey.import_key(flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True))
            body["id_token"] = jwt.encode(json.loads(_b64decode(header)), claims, key)
        response.set_data(json.dumps(body))
        return response

    return app


def main() -> None:
    server = make_server("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0, build(), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
