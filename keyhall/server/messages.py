"""The catalogue of user-facing messages: one stable id, one text per language.

``message_for(id, lang, **params)`` fills the template; ``en-US`` is the default and the fallback.
docs/errors.md lists every id with its statusCode and apiCode.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LANG = "en-US"

CATALOGUE: dict[str, dict[str, str]] = {
    "ok": {"en-US": "Operation successful", "zh-CN": "操作成功"},
    "invalid_argument": {
        "en-US": "Invalid parameter {field}: {reason}",
        "zh-CN": "参数 {field} 无效：{reason}",
    },
    "invalid_body": {
        "en-US": "The request body must be a JSON object: {reason}",
        "zh-CN": "请求体必须是 JSON 对象：{reason}",
    },
    "invalid_email": {
        "en-US": "Invalid parameter {field}: {reason}",
        "zh-CN": "参数 {field} 格式错误：{reason}",
    },
    "password_missing": {
        "en-US": "A password is required (passwordPayload.password is missing or empty)",
        "zh-CN": "请输入密码（passwordPayload.password 缺失或为空）",
    },
    "password_rejected": {
        "en-US": "The password does not meet the password policy: {reason}",
        "zh-CN": "密码不符合密码安全策略：{reason}",
    },
    "code_wrong": {
        "en-US": "The verification code for {field} is wrong",
        "zh-CN": "{field} 的验证码错误",
    },
    "code_expired": {
        "en-US": "The verification code for {field} has expired or was used up; request a new one",
        "zh-CN": "{field} 的验证码已过期或已失效，请重新获取",
    },
    "email_code_required": {
        "en-US": (
            "This user pool requires a verified email to register: send a code with /api/v3/send-email "
            "(CHANNEL_REGISTER or CHANNEL_COMPLETE_EMAIL) and give it in {field}"
        ),
        "zh-CN": (
            "该用户池要求注册时验证邮箱：请通过 /api/v3/send-email"
            "（CHANNEL_REGISTER 或 CHANNEL_COMPLETE_EMAIL）获取验证码，并填入 {field}"
        ),
    },
    "registration_disabled": {
        "en-US": "Self-registration is disabled for this application",
        "zh-CN": "该应用已关闭自主注册",
    },
    "app_not_found": {
        "en-US": (
            "Application {app_id} does not exist; check the x-genauth-app-id (or x-authing-app-id) header"
        ),
        "zh-CN": "应用 {app_id} 不存在，请检查 x-genauth-app-id（或 x-authing-app-id）请求头",
    },
    "app_id_missing": {
        "en-US": "The app id is missing; send it in the x-genauth-app-id (or x-authing-app-id) header",
        "zh-CN": "缺少应用 ID，请在 x-genauth-app-id（或 x-authing-app-id）请求头中提供",
    },
    "invalid_client": {
        "en-US": "The app credentials are wrong: {reason}",
        "zh-CN": "应用凭证错误：{reason}",
    },
    "email_taken": {
        "en-US": "A user with this email already exists",
        "zh-CN": "该邮箱已被注册，请不要重复注册",
    },
    "username_taken": {
        "en-US": "This username is already taken",
        "zh-CN": "用户名已存在",
    },
    "phone_taken": {
        "en-US": "This phone number is already in use",
        "zh-CN": "该手机号已被绑定",
    },
    "payload_too_large": {
        "en-US": "The request body is larger than {limit} bytes",
        "zh-CN": "请求体超过 {limit} 字节",
    },
    "throttled": {
        "en-US": "Too many requests, retry in {retry_after} seconds",
        "zh-CN": "请求过于频繁，请 {retry_after} 秒后重试",
    },
    "password_decrypt_failed": {
        "en-US": "Decrypt password failed, please check your encryption configuration",
        "zh-CN": "密码解密失败，请检查加密配置",
    },
    "signin_refused": {
        "en-US": "Account not exists or password is incorrect.",
        "zh-CN": "账号不存在或密码错误",
    },
    "account_locked": {
        "en-US": "Too many failed sign-in attempts: password sign-in for this account is locked; "
        "retry in {retry_after} seconds",
        "zh-CN": "登录失败次数过多，该账号的密码登录已被锁定，请 {retry_after} 秒后重试",
    },
    "account_suspended": {
        "en-US": "This account is {status} and cannot sign in; contact the administrator",
        "zh-CN": "该账号状态为 {status}，无法登录，请联系管理员",
    },
    "old_password_wrong": {
        "en-US": "Password is incorrect: oldPassword does not match the current password",
        "zh-CN": "密码错误：oldPassword 与当前密码不符",
    },
    "invalid_token": {
        "en-US": "Not signed in: the access token {reason}; sign in again",
        "zh-CN": "尚未登录：access token {reason}，请重新登录",
    },
    "invalid_grant": {
        "en-US": "The refresh token {reason}; sign in again",
        "zh-CN": "refresh token {reason}，请重新登录",
    },
    "unsupported_grant_type": {
        "en-US": "grant_type {grant_type} is not supported; Keyhall's token endpoint takes refresh_token",
        "zh-CN": "不支持 grant_type {grant_type}，Keyhall 的 token 端点仅支持 refresh_token",
    },
    "route_not_found": {
        "en-US": "No such endpoint: {method} {path}",
        "zh-CN": "接口不存在：{method} {path}",
    },
    "method_not_allowed": {
        "en-US": "Method {method} is not allowed on {path}",
        "zh-CN": "{path} 不支持 {method} 方法",
    },
    "server_error": {
        "en-US": "Internal server error; quote the requestId when reporting it",
        "zh-CN": "服务器内部错误，请提供 requestId 以便排查",
    },
    "service_unavailable": {
        "en-US": "The service is temporarily unavailable: {reason}",
        "zh-CN": "服务暂时不可用：{reason}",
    },
    "server_busy": {
        "en-US": "The server is busy: too many password operations are waiting; "
        "retry in {retry_after} seconds",
        "zh-CN": "服务器繁忙：等待处理的密码运算过多，请 {retry_after} 秒后重试",
    },
    "rate_limit_store_unavailable": {
        "en-US": "The service is temporarily unavailable: the rate-limit store (Redis) is unreachable; "
        "retry in {retry_after} seconds",
        "zh-CN": "服务暂时不可用：无法连接限流计数存储（Redis），请 {retry_after} 秒后重试",
    },
    "not_ready": {
        "en-US": "Not ready: {reason}",
        "zh-CN": "服务未就绪：{reason}",
    },
    "request_timeout": {
        "en-US": "The request was not answered within {seconds} seconds and was cancelled; retry later",
        "zh-CN": "请求未能在 {seconds} 秒内完成，已取消，请稍后重试",
    },
}

# Texts for the ``reason`` of a password rejection, one per rule of keyhall.server.identity.password_policy.
PASSWORD_RULES: dict[str, dict[str, str]] = {
    "min_length": {
        "en-US": "it must be at least {min_length} characters long",
        "zh-CN": "长度至少为 {min_length} 个字符",
    },
    "max_length": {
        "en-US": "it must be at most {max_length} characters long",
        "zh-CN": "长度最多为 {max_length} 个字符",
    },
    "character_classes": {
        "en-US": "it must contain at least {classes} of: letters, digits, symbols",
        "zh-CN": "必须至少包含字母、数字、符号中的 {classes} 种",
    },
    "custom_regex": {
        "en-US": "{custom_message}",
        "zh-CN": "{custom_message}",
    },
    "common_password": {
        "en-US": "it is on the list of common or breached passwords; choose another",
        "zh-CN": "该密码过于常见或已泄露，请更换",
    },
    "equals_identifier": {
        "en-US": "it must not be the same as your email or username",
        "zh-CN": "不能与邮箱或用户名相同",
    },
    "control_characters": {
        "en-US": "it must not contain control characters",
        "zh-CN": "不能包含控制字符",
    },
}


def normalise_lang(value: str | None) -> str:
    """Map an ``x-genauth-lang`` header value to a catalogue language (zh*, else en-US)."""
    if value and value.strip().lower().startswith("zh"):
        return "zh-CN"
    return DEFAULT_LANG


def message_for(message_id: str, lang: str = DEFAULT_LANG, **params: Any) -> str:
    """The text of ``message_id`` in ``lang``, with ``params`` filled in."""
    texts = CATALOGUE.get(message_id) or CATALOGUE["server_error"]
    if "rule" in params and params["rule"] in PASSWORD_RULES:
        rule_params = {k: v for k, v in params.items() if k != "rule"}
        params = {**params, "reason": password_rule_text(params["rule"], lang, **rule_params)}
    template = texts.get(lang) or texts[DEFAULT_LANG]
    return _fill(template, params)


def password_rule_text(rule: str, lang: str = DEFAULT_LANG, **params: Any) -> str:
    texts = PASSWORD_RULES[rule]
    return _fill(texts.get(lang) or texts[DEFAULT_LANG], params)


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, params: dict[str, Any]) -> str:
    return template.format_map(_Missing(params))
