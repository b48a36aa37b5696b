"""One sign-in: outbound HTTP calls and database queries of the callback, app against baseline.

Both providers sign in the same CloudSync account through the same fake, driven like a browser:
the site through Django's test client, the consent page over real HTTP. The baseline is
``testsupport.baseline``, built as allauth builds its own providers, with allauth's stock token
storage (``SOCIALACCOUNT_STORE_TOKENS = True``, plaintext ``SocialToken``). django-cloudsync runs
with its documented settings (allauth's ``STORE_TOKENS`` left off: the app keeps its own rows).
Only the callback request is counted: the login POST and the consent page are the same for both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.test import Client, override_settings
from django.urls import reverse

from django_cloudsync.testing.flow import consent
from testsupport import routers
from testsupport.baseline import PROVIDER_ID as BASELINE_PROVIDER_ID

from . import seed
from .context import Context
from .measure import QueryCounter
from .report import Row

APP_PROVIDER_ID = "cloudsync"
#: How many more callback queries than the baseline the issue allows.
QUERY_BUDGET = 2
REPEATS = 3


@dataclass(frozen=True)
class CallbackCost:
    queries: int
    outbound_calls: int
    new_connections: int
    statements: tuple[str, ...]


def sign_in_callback(client: Client, provider_id: str, fake: Any) -> CallbackCost:
    """Start a sign-in, consent on the fake, and measure the site's callback request."""
    login = client.post(f"{reverse(f'{provider_id}_login')}?{urlencode({'process': 'login'})}")
    if login.status_code != 302:
        raise RuntimeError(f"{provider_id} login answered {login.status_code}")
    callback_url = consent(str(login["Location"]))
    before = fake.counters
    with QueryCounter() as counter:
        response = client.get(callback_url)
    after = fake.counters
    if response.status_code != 302 or "/login/" in response.get("Location", ""):
        raise RuntimeError(
            f"{provider_id} callback answered {response.status_code} {response.get('Location')}"
        )
    return CallbackCost(
        queries=counter.count,
        outbound_calls=sum(after[key] - before[key] for key in ("token_requests", "api_calls")),
        new_connections=after["connections"] - before["connections"],
        statements=tuple(counter.statements),
    )


def new_and_returning(provider_id: str, fake: Any) -> tuple[CallbackCost, CallbackCost]:
    """The callback's cost for a first sign-in (new user) and a second one (returning user)."""
    seed.wipe(routers.selected_alias)
    new = sign_in_callback(Client(), provider_id, fake)
    returning = sign_in_callback(Client(), provider_id, fake)
    return new, returning


def measure(provider_id: str, fake: Any, **settings: Any) -> tuple[list[CallbackCost], list[CallbackCost]]:
    news, returnings = [], []
    with override_settings(**settings):
        for _ in range(REPEATS):
            new, returning = new_and_returning(provider_id, fake)
            news.append(new)
            returnings.append(returning)
    seed.wipe(routers.selected_alias)
    return news, returnings


def statement_difference(app: CallbackCost, baseline: CallbackCost) -> str:
    """What the app runs that the baseline does not, and the reverse, by statement kind."""
    app_kinds = Counter(app.statements)
    baseline_kinds = Counter(baseline.statements)
    more = app_kinds - baseline_kinds
    fewer = baseline_kinds - app_kinds
    parts = []
    if more:
        parts.append("app only: " + ", ".join(f"{kind} x{count}" for kind, count in sorted(more.items())))
    if fewer:
        parts.append(
            "baseline only: " + ", ".join(f"{kind} x{count}" for kind, count in sorted(fewer.items()))
        )
    return "; ".join(parts) or "the same statements"


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def run(context: Context) -> list[Row]:
    fake = context.fake
    rows: list[Row] = []
    for label, alias, skip_reason in context.databases():
        if alias is None:
            rows.append(
                Row(
                    f"DB queries during one sign-in callback, {label}: new user / returning user",
                    f"≤ baseline + {QUERY_BUDGET}",
                    f"skipped: {skip_reason}",
                    "skipped",
                )
            )
            continue
        with routers.database(alias):
            app = measure(APP_PROVIDER_ID, fake)
            baseline = measure(BASELINE_PROVIDER_ID, fake, SOCIALACCOUNT_STORE_TOKENS=True)
            store_tokens_too = measure(APP_PROVIDER_ID, fake, SOCIALACCOUNT_STORE_TOKENS=True)
        if alias == "default":
            rows.append(_outbound_row(app, baseline))
        rows.append(_queries_row(label, app, baseline, store_tokens_too))
    return rows


def _outbound_row(
    app: tuple[list[CallbackCost], list[CallbackCost]],
    baseline: tuple[list[CallbackCost], list[CallbackCost]],
) -> Row:
    app_costs = app[0] + app[1]
    baseline_costs = baseline[0] + baseline[1]
    outbound = [cost.outbound_calls for cost in app_costs]
    return Row(
        figure="outbound HTTP calls during one sign-in",
        target="2",
        app=_span(outbound),
        handrolled=_span([cost.outbound_calls for cost in baseline_costs]),
        met=set(outbound) == {2},
        notes=[
            "Code exchange and GET /v1/me, counted by the fake during the callback. New TCP "
            f"connections for them: {_span([cost.new_connections for cost in app_costs])} (app: one pooled "
            f"session), {_span([cost.new_connections for cost in baseline_costs])} "
            "(allauth: a new session per call)."
        ],
    )


def _queries_row(
    label: str,
    app: tuple[list[CallbackCost], list[CallbackCost]],
    baseline: tuple[list[CallbackCost], list[CallbackCost]],
    store_tokens_too: tuple[list[CallbackCost], list[CallbackCost]],
) -> Row:
    def worst(costs: list[CallbackCost]) -> int:
        return max(cost.queries for cost in costs)

    def spans(costs: tuple[list[CallbackCost], list[CallbackCost]]) -> str:
        return f"{_span([c.queries for c in costs[0]])} / {_span([c.queries for c in costs[1]])}"

    (app_new, app_returning), (base_new, base_returning) = app, baseline
    return Row(
        figure=f"DB queries during one sign-in callback, {label}: new user / returning user",
        target=f"≤ baseline + {QUERY_BUDGET}",
        app=spans(app),
        handrolled=f"{spans(baseline)} (allauth-style provider, STORE_TOKENS)",
        met=worst(app_new) <= worst(base_new) + QUERY_BUDGET
        and worst(app_returning) <= worst(base_returning) + QUERY_BUDGET,
        notes=[
            f"{label}, {REPEATS} sign-ins of each kind. New user: "
            + statement_difference(app_new[0], base_new[0])
            + ". Returning user: "
            + statement_difference(app_returning[0], base_returning[0])
            + f". With SOCIALACCOUNT_STORE_TOKENS = True as well (allauth then also saves the sealed "
            f"token it was handed): {spans(store_tokens_too)}."
        ],
    )
