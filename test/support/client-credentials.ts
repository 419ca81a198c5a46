// A service's access token from an OAuth2 server (such as startOAuth2Server's),
// the way a service client gets one: client_credentials, client_secret_basic.

/** An access token from the token endpoint `tokenUrl` for `client`, for `scope` when one is given. */
export async function clientCredentialsToken(
  tokenUrl: string,
  client: { readonly clientId: string; readonly clientSecret: string },
  scope?: string,
): Promise<string> {
  const body = new URLSearchParams({ grant_type: "client_credentials" });
  if (scope) body.set("scope", scope);
  const res = await fetch(tokenUrl, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString("base64")}` },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}
