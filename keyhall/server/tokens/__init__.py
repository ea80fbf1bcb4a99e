"""Tokens: RS256 signing keys and the JWKS (RFC 7517), JWT access and id tokens (RFC 7519, OpenID
Connect Core), opaque refresh tokens with rotation and reuse detection."""
