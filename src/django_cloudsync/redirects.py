"""Where to send a user whose CloudSync grant is missing, dead, or too narrow.

Every URL built here points at this site: allauth's CloudSync login view, with a ``next`` that
is checked with :func:`~django.utils.http.url_has_allowed_host_and_scheme` first (allauth checks
it again when it redirects). A ``next`` that could leave the site is dropped, never passed on.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from .conf import PROVIDER_ID

#: The ``process`` values allauth's login view understands that make sense for a button or a
#: redirect: sign in (or sign up), or connect CloudSync to the signed-in user.
PROCESSES = ("login", "connect")


def safe_next(request: HttpRequest | None, url: str | None) -> str | None:
    """``url`` if redirecting to it keeps the user on this site, else ``None``.

    Without a request only a path on this site (``/...``, not ``//host/...``) passes.
    """
    if not url:
        return None
    allowed_hosts = {request.get_host()} if request is not None else set()
    require_https = request.is_secure() if request is not None else False
    if url_has_allowed_host_and_scheme(url, allowed_hosts=allowed_hosts, require_https=require_https):
        return url
    return None


def current_path(request: HttpRequest) -> str | None:
    """This request's path and query, if it is safe to come back to (see :func:`safe_next`).

    A path such as ``//evil.example/`` reads as another host once it is put in a URL, so it is
    refused like any off-site address.
    """
    return safe_next(request, request.get_full_path())


def login_url(
    request: HttpRequest | None,
    *,
    process: str = "login",
    next_url: str | None = None,
    scopes: Iterable[str] = (),
) -> str:
    """allauth's CloudSync login URL for ``process``, asking for ``scopes`` beyond ``SCOPE``.

    allauth answers a GET there with a "Continue" page that POSTs (its protection against
    sign-in by a cross-site link); the login button POSTs directly. allauth adds ``SCOPE`` and
    this provider adds ``offline_access``, so ``scopes`` only needs what is missing.
    """
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {', '.join(PROCESSES)}, not {process!r}")
    params = {"process": process}
    next_url = safe_next(request, next_url)
    if next_url:
        params["next"] = next_url
    # allauth splits the dynamic scope on commas.
    scope = ",".join(dict.fromkeys(s for s in scopes if s))
    if scope:
        params["scope"] = scope
    return f"{reverse(f'{PROVIDER_ID}_login')}?{urlencode(params)}"


def consent_url(request: HttpRequest, scopes: Iterable[str] = (), *, process: str = "connect") -> str:
    """allauth's CloudSync login URL that asks for ``scopes`` and comes back to this page."""
    return login_url(request, process=process, next_url=current_path(request), scopes=scopes)


def redirect_to_consent(
    request: HttpRequest, scopes: Iterable[str] = (), *, process: str = "connect"
) -> HttpResponseRedirect:
    """A redirect through CloudSync's consent for ``scopes`` and back to this page.

    A signed-in user connecting first sees the site's own page saying, in plain words, what is
    being added (:mod:`django_cloudsync.consent`); a sign-in goes to allauth's login view.
    """
    if process == "connect" and request.user.is_authenticated:
        from .consent import consent_url as consent_page_url

        return HttpResponseRedirect(consent_page_url(request, scopes, next_url=current_path(request)))
    return HttpResponseRedirect(consent_url(request, scopes, process=process))


def redirect_to_reauthorize(request: HttpRequest, scopes: Iterable[str] = ()) -> HttpResponseRedirect:
    """After a dead grant: through CloudSync's consent for ``scopes`` again, and back to this page.

    The signed-in user connects CloudSync again; a view that signed the user out meanwhile can
    only offer a sign-in.
    """
    process = "connect" if request.user.is_authenticated else "login"
    return redirect_to_consent(request, scopes, process=process)
