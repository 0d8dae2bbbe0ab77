// A real OpenID Connect provider (npm oidc-provider) on 127.0.0.1 for the
// sign-in tests: `node tests/oidc/provider.js <port>`. Prints "ready <issuer>"
// once it listens.
//
// Accounts: any login works (the dev login form). The login is the subject;
// a login with an "@" is also the e-mail, verified unless it starts with
// "unverified.". A login without "@" has no e-mail claim.
//
// Clients are "native" so that their loopback redirect URIs match on any port
// (RFC 8252): the app under test listens on a random port; the path must match.
// Two clients get ID tokens that a broken or hostile provider would send,
// re-signed here with the provider's own key, so only the claim is wrong:
//   topup-badaud   its ID tokens name another audience
//   topup-expired  its ID tokens expired an hour ago
import { randomBytes } from 'node:crypto';

import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.js <port>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const SECRET = 'topup-test-client-secret-0123456789abcdef';
const client = (id, providerId) => ({
  client_id: id,
  client_secret: SECRET,
  application_type: 'native',
  redirect_uris: [`http://127.0.0.1/sign-in/${providerId}/callback`],
  token_endpoint_auth_method: 'client_secret_basic',
});

const TAMPER = {
  'topup-badaud': () => ({ aud: 'someone-else' }),
  'topup-expired': (now) => ({ iat: now - 7200, exp: now - 3600 }),
};

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    client('topup-test', 'idp'),
    client('topup-badaud', 'badaud'),
    client('topup-expired', 'expired'),
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  pkce: { required: () => true }, // a client that sends no S256 code_challenge is refused
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, name: id };
        if (id.includes('@')) {
          claims.email = id;
          claims.email_verified = !id.startsWith('unverified.');
        }
        return claims;
      },
    };
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body;
  if (ctx.path !== '/token' || !body || typeof body !== 'object' || !body.id_token) return;
  const claims = decodeJwt(body.id_token);
  const tamper = TAMPER[claims.aud];
  if (!tamper) return;
  const header = decodeProtectedHeader(body.id_token);
  const changed = { ...claims, ...tamper(Math.floor(Date.now() / 1000)) };
  ctx.body = { ...body, id_token: await new SignJWT(changed).setProtectedHeader(header).sign(privateKey) };
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
