"""One signed POST over urllib that never follows a redirect.

A redirect is answered as itself (an HTTPError with its 3xx status): the
signed order must not travel to a host the operator did not configure.
"""
from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass

MAX_ANSWER = 64 * 1024  # we read at most this much of an answer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError(3xx): handled as an answer


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None = None


class Unreachable(Exception):
    """No HTTP answer at all: refused, reset, timed out, name not found."""


def post(url: str, body: bytes, headers: dict, timeout: float) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read(MAX_ANSWER),
                          response.headers.get("Retry-After"))
    except urllib.error.HTTPError as error:
        with error:
            try:
                raw = error.read(MAX_ANSWER)
            except (OSError, http.client.HTTPException):
                raw = b""
            return Answer(error.code, raw, error.headers.get("Retry-After"))
    except TimeoutError:
        raise Unreachable(f"no answer within {timeout:g} s") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise Unreachable(f"no answer within {timeout:g} s") from None
        reason = error.reason
        why = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)[:80]
        raise Unreachable(f"could not connect ({why})") from None
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(f"the connection broke ({type(error).__name__})") from None
