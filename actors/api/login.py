"""The login pages: log a configured user account in from a browser, through its session actor.

``GET /login/{account}`` is the page; its script drives the JSON endpoints below, each one
request to ``session:<account>`` (the only owner of the account's session). The QR code
is drawn here (:func:`actors.qr.to_svg`); when it expires, the next poll starts a new one,
so the code on the page follows the token as it rotates. Telegram's error names become
sentences a person can act on (wrong password, expired code); an account that is not a
configured user account is ``404``. Every route here needs the API token.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from actors.api.base import CLIENT, SETTINGS, Param, Route, json_response, read_json
from actors.api.pages import login_page, message_page
from actors.qr import to_svg
from protocols import errors
from protocols import session as s
from protocols.api import CodeForm, LoginStep, PasswordForm, PhoneForm
from protocols.base import Message, Request
from runtime.errors import RequestError

__all__ = ["ROUTES"]

R = TypeVar("R", bound=Message)

LOGIN_TIMEOUT_S = 60.0
PAGE_STATUS_TIMEOUT_S = 3.0

# Telegram's error names, as people should read them.
_CLEAR = {
    "PASSWORD_HASH_INVALID": "Wrong password. Try again.",
    "SRP_ID_INVALID": "The password check expired. Enter the password again.",
    "PHONE_CODE_INVALID": "Wrong code. Check the code Telegram sent and try again.",
    "PHONE_CODE_EXPIRED": "This code has expired. Send a new code.",
    "PHONE_CODE_EMPTY": "Type the code Telegram sent.",
    "PHONE_NUMBER_INVALID": "That is not a valid phone number.",
    "PHONE_NUMBER_BANNED": "This phone number is banned by Telegram.",
    "AUTH_TOKEN_EXPIRED": "The QR code expired before it was accepted. Show a new one.",
}


def _account(request: web.Request) -> str:
    """The session address of the path's account; NotFound unless a configured user."""
    name = request.match_info["account"]
    account = request.app[SETTINGS].accounts.get(name)
    if account is None or account.kind != "user":
        raise RequestError(errors.NotFound(message=f"no user account named {name!r} is configured"))
    return f"session:{name}"


async def _ask(request: web.Request, body: Request[R]) -> R:
    """Ask the account's session actor; Telegram's refusals become clear sentences."""
    try:
        return await request.app[CLIENT].request(_account(request), body, timeout=LOGIN_TIMEOUT_S)
    except RequestError as exc:
        name = exc.error.message.split(":", 1)[0]
        if isinstance(exc.error, errors.BadRequest) and name in _CLEAR:
            raise RequestError(errors.BadRequest(message=f"{_CLEAR[name]} ({name})")) from None
        raise


def _qr_step(qr: s.QrLogin) -> LoginStep:
    return LoginStep(
        state="waiting", qr_svg=to_svg(qr.url), qr_url=qr.url, expires_at=qr.expires_at
    )


def _done(user: s.User | None) -> LoginStep:
    return LoginStep(state="done", user=user)


async def page(request: web.Request) -> web.StreamResponse:
    try:
        address = _account(request)
    except RequestError as exc:
        html = message_page("Unknown account", exc.error.message)
        return web.Response(text=html, status=404, content_type="text/html")
    name = request.match_info["account"]
    try:
        status: s.SessionStatus | None = await request.app[CLIENT].request(
            address, s.GetSessionStatus(), timeout=PAGE_STATUS_TIMEOUT_S
        )
    except RequestError:
        status = None  # the page still works; the steps will say what is wrong
    phone = request.app[SETTINGS].accounts[name].phone or ""
    return web.Response(text=login_page(name, phone, status), content_type="text/html")


async def start_qr(request: web.Request) -> web.StreamResponse:
    return json_response(_qr_step(await _ask(request, s.StartQrLogin())))


async def qr_status(request: web.Request) -> web.StreamResponse:
    state = await _ask(request, s.QrLoginStatus())
    if state.state == "expired":
        return json_response(_qr_step(await _ask(request, s.StartQrLogin())))
    if state.state == "done":
        return json_response(_done(state.user))
    return json_response(LoginStep(state=state.state, hint=state.hint))


async def send_code(request: web.Request) -> web.StreamResponse:
    form = await read_json(request, PhoneForm)
    await _ask(request, s.StartLogin(phone=form.phone))
    return json_response(LoginStep(state="code_sent"))


async def submit_code(request: web.Request) -> web.StreamResponse:
    form = await read_json(request, CodeForm)
    reply = await _ask(request, s.SubmitCode(code=form.code))
    if isinstance(reply, s.PasswordNeeded):
        return json_response(LoginStep(state="password_needed", hint=reply.hint))
    return json_response(_done(reply.user))


async def submit_password(request: web.Request) -> web.StreamResponse:
    form = await read_json(request, PasswordForm)
    reply = await _ask(request, s.SubmitPassword(password=form.password))
    return json_response(_done(reply.user))


_ACCOUNT = Param("account", "path", "string", True, "a configured user account")

ROUTES = (
    Route(
        "GET",
        "/login/{account}",
        page,
        "The login page (HTML)",
        params=(_ACCOUNT,),
        guarded=True,
        content="text/html",
    ),
    Route(
        "POST",
        "/login/{account}/qr",
        start_qr,
        "Start a QR login: the code to scan",
        LoginStep,
        params=(_ACCOUNT,),
        guarded=True,
    ),
    Route(
        "GET",
        "/login/{account}/qr",
        qr_status,
        "Where the QR login stands (a new code once the last one expired)",
        LoginStep,
        params=(_ACCOUNT,),
        guarded=True,
    ),
    Route(
        "POST",
        "/login/{account}/phone",
        send_code,
        "Send a login code to the phone",
        LoginStep,
        PhoneForm,
        (_ACCOUNT,),
        guarded=True,
    ),
    Route(
        "POST",
        "/login/{account}/code",
        submit_code,
        "Log in with the code",
        LoginStep,
        CodeForm,
        (_ACCOUNT,),
        guarded=True,
    ),
    Route(
        "POST",
        "/login/{account}/password",
        submit_password,
        "Finish a login with the two-step verification password",
        LoginStep,
        PasswordForm,
        (_ACCOUNT,),
        guarded=True,
    ),
)
