"""How a connector proves who it is to its system: objects the HTTP layer asks for the headers
of each request (:class:`connectors.rest.RestClient`).

In hub.yaml a connector's ``auth`` option is one of::

    auth: {type: bearer, token: env:ERP_TOKEN}
    auth: {type: basic, username: hub, password: env:ERP_PASSWORD}
    auth: {type: api_key, header: X-Api-Key, key: env:ERP_KEY}
    auth: {type: oauth2_client_credentials, token_url: https://erp.example/oauth/token,
           client_id: hub, client_secret: env:ERP_CLIENT_SECRET, scope: orders}

An OAuth2 token is fetched when first needed, shared by every request of the connection, and
fetched again a little before it expires (``refresh_margin_s``) or once after the system
answers 401 to it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, HttpUrl

from hub.errors import RequestFailed, RequestRefused, RequestRetriable

from .base import ConnectorOptions, Secret

if TYPE_CHECKING:
    from .rest import RestClient


class Auth:
    """Adds credentials to a request. ``secrets`` are masked in every error."""

    async def headers(self, client: RestClient) -> dict[str, str]:
        raise NotImplementedError

    def rejected(self) -> bool:
        """The system answered 401: True if new credentials are worth one more try."""
        return False

    @property
    def secrets(self) -> list[str]:
        return []


class HeaderAuth(Auth):
    """One header with a secret value, sent as is (``Authorization: <value>``, an API key)."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    async def headers(self, client: RestClient) -> dict[str, str]:
        return {self.name: self.value}

    @property
    def secrets(self) -> list[str]:
        return [self.value]


class Bearer(HeaderAuth):
    def __init__(self, token: str) -> None:
        super().__init__("authorization", f"Bearer {token}")
        self.token = token

    @property
    def secrets(self) -> list[str]:
        return [self.token]


class Basic(HeaderAuth):
    def __init__(self, username: str, password: str) -> None:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        super().__init__("authorization", f"Basic {pair}")
        self.password = password

    @property
    def secrets(self) -> list[str]:
        return [self.password, self.value.removeprefix("Basic ")]


class OAuth2ClientCredentials(Auth):
    """RFC 6749 §4.4: a token from ``token_url`` for the client's id and secret."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        audience: str | None = None,
        client_auth: Literal["basic", "body"] = "basic",
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.audience = audience
        self.client_auth = client_auth
        self.refresh_margin_s = refresh_margin_s
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0  # tokens fetched so far (for logs and tests)

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret, self._token) if s]

    def rejected(self) -> bool:
        had = self._token is not None
        self._token = None
        return had

    def _fresh(self) -> bool:
        return self._token is not None and self.clock() < self._expires_at - self.refresh_margin_s

    async def headers(self, client: RestClient) -> dict[str, str]:
        if not self._fresh():
            async with self._lock:  # concurrent requests share one fetch
                if not self._fresh():
                    await self._fetch(client)
        return {"authorization": f"Bearer {self._token}"}

    async def _fetch(self, client: RestClient) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {"accept": "application/json"}
        if self.client_auth == "basic":
            headers.update(await Basic(self.client_id, self.client_secret).headers(client))
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        started = self.clock()
        try:
            response = await client.request(
                "POST", self.token_url, form=form, headers=headers, authenticate=False
            )
            answer = response.json()
        except RequestFailed as exc:
            kind = RequestRetriable if exc.retriable else RequestRefused
            raise kind(
                exc.system, f"cannot get an OAuth2 token: {exc.reason}", exc.status
            ) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise RequestRefused(client.system, "the OAuth2 token answer has no access_token")
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._token = token
        self._expires_at = started + lifetime
        self.fetched += 1


class BearerSpec(ConnectorOptions):
    type: Literal["bearer"]
    token: Secret = Field(description="The token, sent as 'Authorization: Bearer <token>'.")

    def build(self) -> Auth:
        return Bearer(self.token.get_secret_value())


class BasicSpec(ConnectorOptions):
    type: Literal["basic"]
    username: str = Field(description="User name.", examples=["hub"])
    password: Secret = Field(description="Password (env:NAME or file:PATH).")

    def build(self) -> Auth:
        return Basic(self.username, self.password.get_secret_value())


class ApiKeySpec(ConnectorOptions):
    type: Literal["api_key"]
    header: str = Field("X-Api-Key", description="The header that carries the key.")
    key: Secret = Field(description="The key (env:NAME or file:PATH).")

    def build(self) -> Auth:
        return HeaderAuth(self.header.lower(), self.key.get_secret_value())


class OAuth2Spec(ConnectorOptions):
    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrl = Field(
        description="The authorization server's token endpoint.",
        examples=["https://erp.example/oauth/token"],
    )
    client_id: str = Field(description="The client id.", examples=["hub"])
    client_secret: Secret = Field(description="The client secret (env:NAME or file:PATH).")
    scope: str | None = Field(None, description="Space-separated scopes to ask for.")
    audience: str | None = Field(None, description="The API the token is for, if the server asks.")
    client_auth: Literal["basic", "body"] = Field(
        "basic",
        description="How the client authenticates to the token endpoint: HTTP Basic (RFC 6749 "
        "§2.3.1) or client_id and client_secret in the form body.",
    )
    refresh_margin_s: float = Field(
        60.0, ge=0, description="Fetch a new token this many seconds before the old one expires."
    )

    def build(self) -> Auth:
        return OAuth2ClientCredentials(
            str(self.token_url),
            self.client_id,
            self.client_secret.get_secret_value(),
            scope=self.scope,
            audience=self.audience,
            client_auth=self.client_auth,
            refresh_margin_s=self.refresh_margin_s,
        )


AuthSpec = Annotated[BearerSpec | BasicSpec | ApiKeySpec | OAuth2Spec, Field(discriminator="type")]
"""The ``auth`` option of a connector that speaks HTTP."""


def build_auth(spec: BearerSpec | BasicSpec | ApiKeySpec | OAuth2Spec | None) -> Auth | None:
    return None if spec is None else spec.build()
