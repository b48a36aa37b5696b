"""``{% cloudsync_login_button %}``: an accessible form that POSTs to allauth's CloudSync login."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.template import TemplateSyntaxError, engines
from django.test import Client
from django.urls import reverse

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import consent, sign_in
from tests.helpers import query_of

pytestmark = pytest.mark.django_db

CUSTOM_TEMPLATES = Path(__file__).resolve().parent / "templates" / "custom_login_button"


@dataclass
class Form:
    method: str
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    #: (type, accessible name) of each button.
    buttons: list[tuple[str, str]] = field(default_factory=list)


class FormReader(HTMLParser):
    """The forms of a page, with each button's accessible name (aria-label, else its text).

    Text inside an ``aria-hidden="true"`` element is not part of the name, as in a browser.
    """

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: dict[str, str] | None = None
        self._button_text: list[str] = []
        self._open: list[tuple[str, bool]] = []  # (tag, hidden from assistive technology)

    def _hidden(self) -> bool:
        return any(hidden for _, hidden in self._open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("method", "get").lower(), values.get("action", "")))
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1].hidden[values.get("name", "")] = values.get("value", "")
        elif tag == "button":
            self._button, self._button_text = values, []
        if tag not in ("input", "path", "br", "img"):
            self._open.append((tag, values.get("aria-hidden") == "true"))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break
        if tag == "button" and self._button is not None and self.forms:
            name = self._button.get("aria-label") or " ".join("".join(self._button_text).split())
            self.forms[-1].buttons.append((self._button.get("type", "submit"), name))
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._button is not None and not self._hidden():
            self._button_text.append(data)


def forms_in(html: str | bytes) -> list[Form]:
    reader = FormReader()
    reader.feed(html.decode() if isinstance(html, bytes) else html)
    return reader.forms


def render(source: str, rf: Any, **context: Any) -> str:
    request = rf.get("/page/")
    return engines["django"].from_string("{% load cloudsync %}" + source).render(context, request)


# The markup.


def test_button_is_a_form_posting_to_the_login_view_with_a_csrf_token(rf: Any) -> None:
    (form,) = forms_in(render("{% cloudsync_login_button %}", rf))

    assert form.method == "post"
    assert urlsplit(form.action).path == reverse("cloudsync_login")
    assert query_of(form.action) == {"process": "login"}
    assert len(form.hidden["csrfmiddlewaretoken"]) >= 32
    assert form.buttons == [("submit", "Sign in with CloudSync")]


def test_connect_button_says_connect(rf: Any) -> None:
    (form,) = forms_in(render('{% cloudsync_login_button process="connect" %}', rf))

    assert query_of(form.action) == {"process": "connect"}
    assert form.buttons == [("submit", "Connect CloudSync")]


def signed_in_request(rf: Any, django_user_model: Any) -> Any:
    request = rf.get("/page/")
    request.user = django_user_model.objects.create_user("grace")
    return request


def test_a_signed_in_user_gets_connect_cloudsync_without_asking(rf: Any, django_user_model: Any) -> None:
    request = signed_in_request(rf, django_user_model)
    html = (
        engines["django"].from_string("{% load cloudsync %}{% cloudsync_login_button %}").render({}, request)
    )

    (form,) = forms_in(html)

    assert query_of(form.action) == {"process": "connect"}
    assert form.buttons == [("submit", "Connect CloudSync")]


def test_a_given_process_wins_over_the_signed_in_default(rf: Any, django_user_model: Any) -> None:
    request = signed_in_request(rf, django_user_model)
    template = engines["django"].from_string(
        '{% load cloudsync %}{% cloudsync_login_button process="login" %}'
    )

    (form,) = forms_in(template.render({}, request))

    assert query_of(form.action) == {"process": "login"}
    assert form.buttons == [("submit", "Sign in with CloudSync")]


def test_the_user_in_the_context_decides_without_a_request(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("grace")
    template = engines["django"].from_string("{% load cloudsync %}{% cloudsync_login_button %}")

    assert "Connect CloudSync" in template.render({"user": user})


def test_next_and_scope_are_passed_on(rf: Any) -> None:
    (form,) = forms_in(
        render("{% cloudsync_login_button next='/files/?a=1&b=2' scope='files:read files:write' %}", rf)
    )

    assert query_of(form.action) == {
        "process": "login",
        "next": "/files/?a=1&b=2",
        "scope": "files:read,files:write",
    }


def test_scope_may_be_a_list(rf: Any) -> None:
    (form,) = forms_in(render("{% cloudsync_login_button scope=scopes %}", rf, scopes=["files:read"]))

    assert query_of(form.action)["scope"] == "files:read"


def test_label_can_be_changed_and_is_escaped(rf: Any) -> None:
    html = render("{% cloudsync_login_button label=label %}", rf, label="Use <b>CloudSync</b>")

    assert "<b>" not in html
    assert forms_in(html)[0].buttons == [("submit", "Use <b>CloudSync</b>")]


def test_csrf_token_is_there_even_without_the_csrf_context_processor(rf: Any) -> None:
    request = rf.get("/page/")
    template = engines["django"].from_string("{% load cloudsync %}{% cloudsync_login_button %}")

    (form,) = forms_in(template.render({"request": request}))  # a plain Context, no processors

    assert len(form.hidden["csrfmiddlewaretoken"]) >= 32


def test_unknown_process_is_a_template_error(rf: Any) -> None:
    with pytest.raises(TemplateSyntaxError, match="process"):
        render('{% cloudsync_login_button process="logout" %}', rf)


def test_template_can_be_overridden(rf: Any, settings: Any) -> None:
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [CUSTOM_TEMPLATES]}]

    html = render("{% cloudsync_login_button process='connect' %}", rf)

    assert 'class="my-site-cloudsync"' in html
    (form,) = forms_in(html)
    assert query_of(form.action) == {"process": "connect"}
    assert form.buttons == [("submit", "Connect CloudSync")]
    assert "csrfmiddlewaretoken" in form.hidden


# Never off the site.


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/", "javascript:alert(1)", "http://testserver.evil/"]
)
def test_off_site_next_is_dropped_from_the_button(rf: Any, next_url: str) -> None:
    (form,) = forms_in(render("{% cloudsync_login_button next=next_url %}", rf, next_url=next_url))

    assert "next" not in query_of(form.action)


def test_same_site_absolute_next_is_kept(rf: Any) -> None:
    (form,) = forms_in(render("{% cloudsync_login_button next='http://testserver/files/' %}", rf))

    assert query_of(form.action)["next"] == "http://testserver/files/"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/"])
def test_off_site_next_sent_to_the_login_view_ends_on_a_local_page(
    client: Client, fake: Any, next_url: str
) -> None:
    response = sign_in(client, next=next_url)

    assert response.status_code == 302
    assert urlsplit(response["Location"]).netloc in ("", "testserver")
    assert "evil.example" not in response["Location"]
    assert CloudSyncToken.objects.exists()  # the sign-in itself went through


# The button in a page, pressed.


def test_pressing_the_button_signs_in_and_goes_to_next(fake: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/")
    (form,) = forms_in(page.content)

    authorize = browser.post(form.action, form.hidden)

    assert authorize.status_code == 302
    assert query_of(authorize["Location"])["scope"] == "workspaces:read offline_access"
    back = browser.get(consent(authorize["Location"]))
    assert back["Location"] == "/workspaces/"
    assert browser.get("/").content.startswith(b"connected")


def test_after_sign_in_the_same_button_connects_instead_of_signing_in_again(fake: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    (form,) = forms_in(browser.get("/").content)
    browser.get(consent(browser.post(form.action, form.hidden)["Location"]))

    (form,) = forms_in(browser.get("/").content)
    authorize = browser.post(form.action, form.hidden)
    back = browser.get(consent(authorize["Location"]))

    assert form.buttons == [("submit", "Connect CloudSync")]
    assert query_of(form.action)["process"] == "connect"
    assert back.status_code == 302
    assert CloudSyncToken.objects.count() == 1  # the same account, connected again, not a second one
    assert browser.get("/").content.startswith(b"connected")


def test_pressing_the_button_without_its_csrf_token_is_refused(fake: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    (form,) = forms_in(browser.get("/").content)

    response = browser.post(form.action, {})

    assert response.status_code == 403
