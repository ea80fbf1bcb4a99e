# The sample code of GenAuth's "Register with Email Password" page, as published (placeholders and all).
# The tests run it with only the import line changed and the GEN_AUTH_* placeholders filled in.
from authing import AuthenticationClient

# Initialize AuthenticationClient
authentication_client = AuthenticationClient(
    # GenAuth App ID
    app_id="GEN_AUTH_APP_ID",
    # GenAuth App Secret
    app_secret="GEN_AUTH_APP_SECRET",
    # GenAuth App Host
    app_host="GEN_AUTH_APP_HOST",
    # GenAuth App Redirect URI
    redirect_uri="GEN_AUTH_APP_REDIRECT_URI",
)
sign_in_resp = authentication_client.sign_up_by_email_password(
    email="188xxxx8888",
    password="passw0rd",
)
print(sign_in_resp)
