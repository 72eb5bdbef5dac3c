"""schemathesis checks of busbar-gateway (loaded with SCHEMATHESIS_HOOKS=gateway_hooks):
every error is a JSON body with a non-empty string `code` and a `message`, and a 5xx is
only ever the bus's state, named by its code (502 decode/crypto, 503 no_responders,
backend, closed or unavailable, 504 timeout): never a 500, never a crash."""

import schemathesis

BUS_STATE = {
    502: {"decode", "crypto"},
    503: {"no_responders", "backend", "closed", "unavailable"},
    504: {"timeout"},
}


@schemathesis.check
def error_has_code(ctx, response, case):  # type: ignore[no-untyped-def]
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except Exception as e:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(f"{status} without a JSON body: {response.text[:200]!r}") from e
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code or not isinstance(body.get("message"), str):
        raise AssertionError(f"{status} body without code and message: {body!r}")
    if status >= 500 and code not in BUS_STATE.get(status, set()):
        raise AssertionError(f"server error {status} {code}: {body!r}")
    return None
