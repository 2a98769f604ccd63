"""Lean ``POST /chat/completions`` over one reused aiohttp session, with the openai SDK's errors.

The SDK's own request pipeline (param transform, httpx request/response models, option merging)
costs 2-6 ms of CPU per request, which caps a 2-core machine far below the latency bound at high
concurrency. This path sends the same JSON body with the same headers and turns every failure into the
exception the SDK would raise (``RateLimitError``, ``InternalServerError``, ``BadRequestError``,
``APITimeoutError``, ``APIConnectionError``, ``APIResponseValidationError``), built with the SDK's own
status-error factory. Successful bodies stay plain dicts; :func:`as_completion` gives the SDK's
``ChatCompletion`` type when a caller wants it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import Callable

import aiohttp
import openai
from openai.types.chat import ChatCompletion

from corpus.llm._http import httpx


def as_completion(data: dict) -> ChatCompletion:
    """The SDK's ``ChatCompletion`` for a response body (constructed the way the SDK does, no validation)."""
    return ChatCompletion.construct(**data)


def check_completion(data: object) -> dict:
    """Return ``data`` if it has the chat completion fields this toolkit reads, else raise ValueError."""
    if not isinstance(data, dict):
        raise ValueError("response body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response has no choices")
    if not isinstance(choices[0].get("message"), dict):
        raise ValueError("response choice has no message")
    return data


def env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP(S)_PROXY, NO_PROXY) sets for ``url``, resolved once, not per request
    (aiohttp's ``trust_env`` re-reads the environment and ~/.netrc on every request)."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class FastChatTransport:
    """One aiohttp session for the client's whole life (connection reuse, keep-alive).

    ``sdk`` returns the AsyncOpenAI client whose status-error factory builds the exceptions; it is
    only called when a request fails, so the fast path never pays for creating one.
    """

    def __init__(self, sdk: Callable[[], openai.AsyncOpenAI], *, base_url: str, api_key: str, connections: int,
                 timeout: float, organization: str | None = None, project: str | None = None):
        self._sdk = sdk
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"guardreasoner-corpus (openai-python {openai.__version__})",
        }
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._proxy = env_proxy(self.url)
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _request(self) -> httpx.Request:
        return httpx.Request("POST", self.url)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections,
                                             ttl_dns_cache=300, enable_cleanup_closed=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
        return self._session

    async def create(self, body: dict) -> dict:
        """Send one chat completion; return the decoded body or raise the SDK's exception."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            async with self.session().post(self.url, data=data, proxy=self._proxy) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except asyncio.TimeoutError:
            raise openai.APITimeoutError(request=self._request()) from None
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(message=f"Connection error: {exc}", request=self._request()) from None
        if status >= 400:
            response = httpx.Response(status, headers=list(headers.items()), content=raw, request=self._request())
            raise self._sdk()._make_status_error_from_response(response)
        try:
            return check_completion(json.loads(raw))
        except ValueError as exc:
            response = httpx.Response(status, headers=list(headers.items()), content=raw, request=self._request())
            raise openai.APIResponseValidationError(
                response, raw.decode("utf-8", "replace")[:500], message=f"Malformed response body: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
