// panva's oidc-provider (a certified OpenID Provider) as an authorization server mounted
// under a realm-style path, for `interop/oidc.sh`. Not a test double: it is the real thing,
// with its own opinions on PKCE, client authentication, RFC 9207 `iss` and token rotation.
import http from 'node:http';
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT || 4000);
const PREFIX = '/realms/acme';
const CALLBACK = process.env.CALLBACK || 'http://127.0.0.1:8080/oauth/callback';
const issuer = `http://127.0.0.1:${PORT}${PREFIX}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'keyway',
    client_secret: 'keyway-client-secret-0123456789',
    redirect_uris: [CALLBACK],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: process.env.AUTH || 'client_secret_basic',
  }],
  features: { revocation: { enabled: true }, devInteractions: { enabled: true } },
  issueRefreshToken: async () => true,
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  ttl: { AccessToken: Number(process.env.AT_TTL || 3600) },
  rotateRefreshToken: true,
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
const handle = provider.callback();
http.createServer((req, res) => {
  // One line per call, so the script can count token requests.
  console.log(req.method, req.url.split('?')[0]);
  if (!req.url.startsWith(PREFIX)) {
    res.statusCode = 404;
    return res.end();
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(PREFIX.length) || '/';
  handle(req, res);
}).listen(PORT, '127.0.0.1', () => console.log('issuer', issuer));
