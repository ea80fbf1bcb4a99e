"""The texts of code messages: one per channel, in en-US and zh-CN, as plain text and HTML.

``string.Template`` is enough for a handful of fixed templates filled with three values (code, minutes,
purpose) that we control; a template engine (Jinja2) would add a dependency for loops and inheritance we
do not need. Values going into HTML are escaped with ``html.escape``.
"""

from __future__ import annotations

import html
from string import Template

from keyhall.server.courier.message import Kind, Message

EMAIL_CHANNELS = (
    "CHANNEL_LOGIN",
    "CHANNEL_REGISTER",
    "CHANNEL_RESET_PASSWORD",
    "CHANNEL_VERIFY_EMAIL_LINK",
    "CHANNEL_UPDATE_EMAIL",
    "CHANNEL_BIND_EMAIL",
    "CHANNEL_UNBIND_EMAIL",
    "CHANNEL_VERIFY_MFA",
    "CHANNEL_UNLOCK_ACCOUNT",
    "CHANNEL_COMPLETE_EMAIL",
    "CHANNEL_DELETE_ACCOUNT",
)
SMS_CHANNELS = (
    "CHANNEL_LOGIN",
    "CHANNEL_REGISTER",
    "CHANNEL_RESET_PASSWORD",
    "CHANNEL_BIND_PHONE",
    "CHANNEL_UNBIND_PHONE",
    "CHANNEL_BIND_MFA",
    "CHANNEL_VERIFY_MFA",
    "CHANNEL_UNBIND_MFA",
    "CHANNEL_COMPLETE_PHONE",
    "CHANNEL_IDENTITY_VERIFICATION",
    "CHANNEL_DELETE_ACCOUNT",
)

# What the code is for, per channel: the one part of a message that differs between channels.
PURPOSES: dict[str, dict[str, str]] = {
    "CHANNEL_LOGIN": {"en-US": "signing in", "zh-CN": "登录"},
    "CHANNEL_REGISTER": {"en-US": "creating your account", "zh-CN": "注册账号"},
    "CHANNEL_RESET_PASSWORD": {"en-US": "resetting your password", "zh-CN": "重置密码"},
    "CHANNEL_VERIFY_EMAIL_LINK": {"en-US": "verifying your email address", "zh-CN": "验证邮箱"},
    "CHANNEL_UPDATE_EMAIL": {"en-US": "changing your email address", "zh-CN": "修改邮箱"},
    "CHANNEL_BIND_EMAIL": {"en-US": "adding this email address", "zh-CN": "绑定邮箱"},
    "CHANNEL_UNBIND_EMAIL": {"en-US": "removing this email address", "zh-CN": "解绑邮箱"},
    "CHANNEL_VERIFY_MFA": {"en-US": "multi-factor authentication", "zh-CN": "多因素认证"},
    "CHANNEL_UNLOCK_ACCOUNT": {"en-US": "unlocking your account", "zh-CN": "解锁账号"},
    "CHANNEL_COMPLETE_EMAIL": {"en-US": "confirming your email address", "zh-CN": "补全邮箱信息"},
    "CHANNEL_DELETE_ACCOUNT": {"en-US": "deleting your account", "zh-CN": "注销账号"},
    "CHANNEL_BIND_PHONE": {"en-US": "adding this phone number", "zh-CN": "绑定手机号"},
    "CHANNEL_UNBIND_PHONE": {"en-US": "removing this phone number", "zh-CN": "解绑手机号"},
    "CHANNEL_BIND_MFA": {"en-US": "setting up multi-factor authentication", "zh-CN": "绑定多因素认证"},
    "CHANNEL_UNBIND_MFA": {"en-US": "turning off multi-factor authentication", "zh-CN": "解绑多因素认证"},
    "CHANNEL_COMPLETE_PHONE": {"en-US": "confirming your phone number", "zh-CN": "补全手机号信息"},
    "CHANNEL_IDENTITY_VERIFICATION": {"en-US": "verifying your identity", "zh-CN": "身份验证"},
}

_SUBJECT = {
    "en-US": Template("Your verification code for $purpose"),
    "zh-CN": Template("您的$purpose验证码"),
}
_TEXT = {
    "en-US": Template(
        "Your verification code for $purpose is $code.\n\n"
        "It expires in $minutes minutes and works once. If you did not ask for it, ignore this message.\n"
    ),
    "zh-CN": Template(
        "您正在进行$purpose，验证码为 $code，$minutes 分钟内有效，仅可使用一次。如非本人操作，请忽略。\n"
    ),
}
_SMS = {
    "en-US": Template("Your code for $purpose is $code ($minutes min). Do not share it."),
    "zh-CN": Template("您的$purpose验证码为 $code，$minutes 分钟内有效，请勿泄露。"),
}
_HTML = {
    "en-US": Template(
        '<!doctype html><html lang="en"><body style="font-family:sans-serif">'
        "<p>Your verification code for $purpose is</p>"
        '<p style="font-size:28px;letter-spacing:4px"><strong>$code</strong></p>'
        "<p>It expires in $minutes minutes and works once.</p>"
        "<p>If you did not ask for it, ignore this message.</p>"
        "</body></html>"
    ),
    "zh-CN": Template(
        '<!doctype html><html lang="zh-CN"><body style="font-family:sans-serif">'
        "<p>您正在进行$purpose，验证码为</p>"
        '<p style="font-size:28px;letter-spacing:4px"><strong>$code</strong></p>'
        "<p>$minutes 分钟内有效，仅可使用一次。如非本人操作，请忽略。</p>"
        "</body></html>"
    ),
}


def render_code_message(kind: Kind, channel: str, to: str, code: str, ttl_s: int, lang: str) -> Message:
    """The message that carries ``code`` for ``channel`` to ``to``, in ``lang`` (zh-CN, else en-US)."""
    lang = lang if lang in _TEXT else "en-US"
    purpose = PURPOSES.get(channel, PURPOSES["CHANNEL_IDENTITY_VERIFICATION"])[lang]
    values = {"purpose": purpose, "code": code, "minutes": max(1, round(ttl_s / 60))}
    if kind == "sms":
        return Message(kind="sms", to=to, subject="", text=_SMS[lang].substitute(values), lang=lang)
    escaped = {key: html.escape(str(value)) for key, value in values.items()}
    return Message(
        kind="email",
        to=to,
        subject=_SUBJECT[lang].substitute(values),
        text=_TEXT[lang].substitute(values),
        html=_HTML[lang].substitute(escaped),
        lang=lang,
    )
